//! Defaults layers (platform → tenant → scenario_type → scenario) on the real stack: a change of
//! a lower layer reaches every scenario it covers without a restart, a scenario that sets the
//! value keeps its own, and an invalid layer keeps the last valid one in force.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;
use rtscore::config::layers::{LayerId, resolve};
use rtscore::config::parse_scenario;
use rtscore::config::store::{ConfigSource, ScenarioStore};
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::*;
use serde_json::{Value, json};

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const ACTIONS: [&str; 4] = ["view", "click", "like", "purchase"];

/// Writes a layer straight into MongoDB over its stored revision (as another tool might).
fn put_layer(stack: &Stack, database: &str, id: &LayerId, rc: Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = ScenarioStore::open(&ConfigSource::Mongo(stack.mongodb_url.clone()), database).await.unwrap();
        let stored = store.get_layer(id).await.unwrap();
        let revision = stored.as_ref().and_then(|d| d["revision"].as_i64()).unwrap_or(0);
        let mut doc = id.empty_document();
        doc["revision"] = (revision + 1).into();
        doc["config"]["realtime_compute"] = rc;
        store.put_layer(id, &doc, revision).await.unwrap();
    });
}

#[test]
fn a_platform_default_change_reaches_every_covered_scenario_without_restart() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("lay"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    let geometry = json!({"window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10});
    let platform_v1 =
        json!({"hot_score": {"decay_lambda": 0.5, "action_weights": {"view": 1.0, "click": 2.0, "like": 3.0, "purchase": 10.0}}});
    let platform_v2 =
        json!({"hot_score": {"decay_lambda": 2.0, "action_weights": {"view": 1.0, "click": 20.0, "like": 3.0, "purchase": 10.0}}});
    put_layer(&stack, &database, &LayerId::Platform, platform_v1.clone());
    // b's type layer (per tenant) sets top_n over the platform; `own` sets lambda and weights.
    let feed = LayerId::Type { tenant: tenant.clone(), scenario_type: "feed".into() };
    put_layer(&stack, &database, &feed, json!({"hot_score": {"top_n": 3}}));
    let docs = [
        json!({"tenant_id": tenant, "scenario_id": "a", "revision": 1, "config": {"realtime_compute": {"hot_score": geometry}}}),
        json!({"tenant_id": tenant, "scenario_id": "b", "scenario_type": "feed", "revision": 1, "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": 10, "window_slide_minutes": 5}}}}),
        json!({"tenant_id": tenant, "scenario_id": "own", "revision": 1, "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10, "decay_lambda": 0.25,
            "action_weights": {"view": 2.0, "click": 1.0}}}}}),
    ];
    stack.put_scenarios(&database, &docs);
    stack.create_topic(&topic, 1);
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .mongo(&stack, &database)
        .redis(&stack)
        .jsonl_out(&sink)
        .view_off()
        .config_poll_ms(100)
        // No full resync during the test: the layer change must arrive through the poll.
        .config_resync_ms(600_000)
        .start();
    let scenarios = ["a", "b", "own"];
    let traffic = |seed: u64, from: i64, to: i64| -> Vec<(String, RefEvent)> {
        scenarios
            .iter()
            .enumerate()
            .flat_map(|(i, s)| fixtures::traffic(seed * 10 + i as u64, from, to, &ACTIONS).into_iter().map(|e| (s.to_string(), e)))
            .collect()
    };
    let lines = |events: &[(String, RefEvent)]| -> Vec<Vec<u8>> {
        let mut sorted: Vec<_> = events.iter().collect();
        sorted.sort_by_key(|(_, e)| e.ts);
        sorted.into_iter().map(|(s, e)| event_line(&tenant, s, &e.item_id, &e.action, e.ts)).collect()
    };
    let applied = |host: &HostProcess, s: &str| {
        host.log().lines().filter(|l| l.contains("config applied") && l.contains(&format!("{tenant}/{s}"))).count()
    };
    let sink_path = sink.clone();
    let reached = |end: i64| {
        let sink = sink_path.clone();
        move || {
            let windows = read_hot_sink(&sink).0;
            scenarios.iter().all(|s| windows.keys().any(|(k, e)| k.ends_with(&format!("/{s}")) && *e >= end))
        }
    };

    // Phase 1 under platform v1: windows up to T0 + 30 min close.
    let phase1 = traffic(1, T0, T0 + 32 * MIN);
    stack.produce(&topic, 1, &lines(&phase1));
    assert!(wait_until(Duration::from_secs(30), reached(T0 + 30 * MIN)), "{}", host.log());

    // Raise the platform's click weight and lambda while the host runs: a and b take it.
    put_layer(&stack, &database, &LayerId::Platform, platform_v2.clone());
    assert!(wait_until(Duration::from_secs(10), || applied(&host, "a") >= 2 && applied(&host, "b") >= 2), "{}", host.log());
    assert_eq!(applied(&host, "own"), 1, "a scenario that sets the values keeps its own\n{}", host.log());

    // An invalid platform layer is refused; v2 stays in force.
    put_layer(&stack, &database, &LayerId::Platform, json!({"hot_score": {"decay_lambda": "fast"}}));
    assert!(
        wait_until(Duration::from_secs(10), || host.log().contains("invalid defaults layer")),
        "the invalid layer is not reported\n{}",
        host.log()
    );
    let phase2 = traffic(2, T0 + 32 * MIN, T0 + 52 * MIN);
    stack.produce(&topic, 1, &lines(&phase2));
    assert!(wait_until(Duration::from_secs(30), reached(T0 + 50 * MIN)), "{}", host.log());
    assert!(host.stop().success());

    // Every window of every scenario equals the reference under the layers in force when it
    // was emitted: windows ending by T0 + 30 min under v1, later ones under v2.
    let layers = |platform: &Value| {
        let mut m = BTreeMap::new();
        for (id, rc) in [(LayerId::Platform, platform.clone()), (feed.clone(), json!({"hot_score": {"top_n": 3}}))] {
            let mut d = id.empty_document();
            d["config"]["realtime_compute"] = rc;
            m.insert(id, d);
        }
        m
    };
    let (records_all, mut redis) = (read_hot_sink(&sink).1, stack.redis());
    for (s, doc) in scenarios.iter().zip(&docs) {
        let events: Vec<RefEvent> = phase1.iter().chain(&phase2).filter(|(x, _)| x == s).map(|(_, e)| e.clone()).collect();
        let want_v1 = hot_lists(&events, &parse_scenario(&resolve(&layers(&platform_v1), doc)).unwrap().hot_score);
        let want_v2 = hot_lists(&events, &parse_scenario(&resolve(&layers(&platform_v2), doc)).unwrap().hot_score);
        if *s == "own" {
            assert_eq!(want_v1, want_v2);
        } else {
            assert_ne!(want_v1, want_v2, "{s}: the platform change must change its hot lists");
        }
        let records: Vec<Value> = records_all.iter().filter(|r| r["scenario_id"] == *s).cloned().collect();
        let checked =
            check_against_reference(
                &records,
                "hot",
                |r| if r["window_end"].as_i64().unwrap() <= T0 + 30 * MIN { &want_v1 } else { &want_v2 },
            );
        assert!(checked >= 10, "{s}: {checked} windows");
        // And the served list (Redis) is the latest window's under v2.
        let served: Vec<(String, f64)> = redis.zrevrange_withscores(format!("rt:{tenant}:{s}:hot"), 0, -1).unwrap();
        let last = records.iter().filter_map(|r| r["window_end"].as_i64()).max().unwrap();
        let mut got: Vec<&str> = served.iter().map(|(i, _)| i.as_str()).collect();
        let mut want: Vec<&str> = want_v2[&last].iter().map(|(i, _)| i.as_str()).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{s}: the served hot list");
        if *s == "b" {
            assert_eq!(served.len(), 3, "b's type layer sets top_n");
        }
    }
}

/// The layers through the admin API and the CLI on a host reading a scenarios directory: who
/// may write which layer, refusals naming the scenario, the resolved view with provenance, and
/// a tenant default reaching the running host.
#[test]
fn layers_through_the_api_and_cli_are_scoped_validated_and_shown_resolved() {
    use rtscore_testkit::web::{ApiHost, request};
    let doc = |t: &str, s: &str, hot: Value| json!({"tenant_id": t, "scenario_id": s, "scenario_type": "feed", "config": {"realtime_compute": {"hot_score": hot}}});
    let sink = tempfile::tempdir().unwrap();
    let sink_path = sink.path().join("out.jsonl");
    let mut api = ApiHost::start_with(
        &[
            doc("acme", "home", json!({"window_size_minutes": 30})),
            doc("acme", "own", json!({"decay_lambda": 0.7})),
            doc("rival", "feed", json!({})),
        ],
        |h| h.jsonl_out(&sink_path),
    );
    let (port, acme, rival, admin) = (api.port, api.token("tenant:acme"), api.token("tenant:rival"), api.token("admin"));
    let lambda = |x: f64| serde_json::to_vec(&json!({"config": {"realtime_compute": {"hot_score": {"decay_lambda": x}}}})).unwrap();

    // Tenants may not write the platform layer, nor another tenant's; they may read the platform's.
    assert_eq!(request(port, "PATCH", "/api/v1/defaults/platform", Some(&acme), &lambda(0.3)).status, 403);
    assert_eq!(request(port, "GET", "/api/v1/defaults/platform", Some(&acme), b"").status, 200);
    assert_eq!(request(port, "PATCH", "/api/v1/tenants/acme/defaults", Some(&rival), &lambda(0.3)).status, 403);
    assert_eq!(request(port, "PATCH", "/api/v1/tenants/acme/defaults/types/feed", Some(&rival), &lambda(0.3)).status, 403);
    let r = request(port, "PATCH", "/api/v1/defaults/platform", Some(&admin), &lambda(0.3));
    assert_eq!((r.status, r.json()["revision"].as_i64()), (200, Some(1)), "{}", r.body);

    // A tenant default slide of 20 minutes would make acme/home (a 30-minute window over the
    // default 15-minute slide) invalid: refused naming it, nothing stored.
    let r = request(
        port,
        "PATCH",
        "/api/v1/tenants/acme/defaults",
        Some(&acme),
        b"{\"config\":{\"realtime_compute\":{\"hot_score\":{\"window_slide_minutes\":20}}}}",
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("acme/home"), "{}", r.body);
    assert_eq!(request(port, "GET", "/api/v1/tenants/acme/defaults", Some(&acme), b"").json()["revision"], 0);
    let r = request(port, "PATCH", "/api/v1/tenants/acme/defaults", Some(&acme), &lambda(1.5));
    assert_eq!(r.status, 200, "{}", r.body);

    // The type layer with the CLI; then the resolved view names each value's layer.
    let scenarios_dir = api.dir.path().join("scenarios");
    let dir = scenarios_dir.to_str().unwrap();
    let out = cli(&[
        "defaults",
        "patch",
        "--tenant-id",
        "acme",
        "--scenario-type",
        "feed",
        "--scenarios-dir",
        dir,
        "--immediately",
        "--body",
        r#"{"config":{"realtime_compute":{"hot_score":{"top_n":7}}}}"#,
    ]);
    assert!(out.contains("revision 1"), "{out}");
    let r = request(port, "GET", "/api/v1/tenants/acme/scenarios/home/resolved", Some(&acme), b"").json();
    assert_eq!(r["config"]["realtime_compute"]["hot_score"]["decay_lambda"], 1.5);
    assert_eq!(r["provenance"]["hot_score.decay_lambda"], "tenant");
    assert_eq!(r["provenance"]["hot_score.top_n"], "type:feed");
    assert_eq!(r["provenance"]["hot_score.window_size_minutes"], "scenario");
    assert_eq!(r["provenance"]["hot_score.enabled"], "builtin default");
    let own = request(port, "GET", "/api/v1/tenants/acme/scenarios/own/resolved", Some(&acme), b"").json();
    assert_eq!(
        (own["config"]["realtime_compute"]["hot_score"]["decay_lambda"].as_f64(), own["provenance"]["hot_score.decay_lambda"].as_str()),
        (Some(0.7), Some("scenario"))
    );
    let rival_view = request(port, "GET", "/api/v1/tenants/rival/scenarios/feed/resolved", Some(&rival), b"").json();
    assert_eq!(rival_view["provenance"]["hot_score.decay_lambda"], "platform", "acme's layers never reach rival");
    assert_eq!(rival_view["provenance"]["hot_score.top_n"], "builtin default");
    let table = cli(&["scenario", "get", "--resolved", "--tenant-id", "acme", "--scenario-id", "home", "--scenarios-dir", dir]);
    assert!(table.contains("hot_score.top_n") && table.contains("type:feed"), "{table}");
    // The console's scenario page shows the same, value by value.
    let cookie = format!("rtscore_token={acme}");
    let page = rtscore_testkit::web::request_raw(port, "GET", "/console/tenants/acme/scenarios/home", &[("Cookie", &cookie)], b"", None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Resolved configuration") && page.body.contains("hot_score.top_n") && page.body.contains("type:feed"),
        "{}",
        page.body
    );
    let history = request(port, "GET", "/api/v1/tenants/acme/defaults/history", Some(&acme), b"").json();
    assert_eq!(history["revisions"].as_array().unwrap().len(), 1);

    // The running host applied the layers it watches (defaults/ of its directory): acme/home's
    // windows are scored with the resolved config, top_n 7 and lambda 1.5 included.
    std::thread::sleep(Duration::from_secs(2));
    let events = fixtures::traffic(7, T0, T0 + 40 * MIN, &ACTIONS);
    api.send(&events.iter().map(|e| event_line("acme", "home", &e.item_id, &e.action, e.ts)).collect::<Vec<_>>());
    assert!(api.end_of_input().success());
    let cfg = parse_scenario(&json!({"tenant_id": "acme", "scenario_id": "home", "config": r["config"]})).unwrap().hot_score;
    assert_eq!((cfg.top_n, cfg.decay_lambda), (7, 1.5));
    let (_, records) = read_hot_sink(&sink_path);
    let want = hot_lists(&events, &cfg);
    assert!(want.values().any(|l| l.len() == 7), "the traffic fills the type layer's top_n");
    assert!(check_against_reference(&records, "hot", |_| &want) >= 3, "{}", api.host.log());
}
