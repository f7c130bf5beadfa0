//! Safe rollout (docs/rollout.md) on the real stack: a shadow candidate scored beside the live
//! config, promote and rollback while events flow, revision history, the event-time switch,
//! and candidates that fail without touching the live output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::Commands;
use rtscore::config::{Candidate, HotScoreConfig, parse_scenario};
use rtscore::plugin::sha256_hex;
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::hot_vectors as vectors;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const ACTIONS: [&str; 4] = ["view", "click", "like", "purchase"];

fn live_doc(tenant: &str) -> serde_json::Value {
    serde_json::json!({"tenant_id": tenant, "scenario_id": "feed", "config": {"realtime_compute": {"hot_score": {
        "action_weights": {"view": 1.0, "click": 2.0, "like": 3.0, "purchase": 10.0},
        "decay_lambda": 0.5, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}})
}

/// The candidate used below: clicks weigh ten times more, faster decay, a shorter list.
const CANDIDATE: &str = r#"{"candidate":{"hot_score":{"action_weights":{"click":20},"decay_lambda":1.5,"top_n":8}}}"#;

fn hot_cfg(doc: &serde_json::Value) -> HotScoreConfig {
    parse_scenario(doc).unwrap().hot_score
}

fn candidate_cfg(doc: &serde_json::Value) -> HotScoreConfig {
    match parse_scenario(doc).unwrap().candidate {
        Some(Candidate::Valid(c)) if c.hot_score.is_some() => c.hot_score.unwrap(),
        other => panic!("no valid hot-score candidate: {other:?}"),
    }
}

/// One test's world on the stack: unique tenant, topic and database, a temporary directory for
/// the sink and plugin modules, and scenario `{tenant}/feed` stored through the CLI (revision 1).
struct World {
    stack: Stack,
    tenant: String,
    topic: String,
    database: String,
    sink: PathBuf,
    plugins: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    fn new(prefix: &str) -> World {
        let stack = Stack::ensure();
        let dir = tempfile::tempdir().unwrap();
        let (sink, plugins) = (dir.path().join("out.jsonl"), dir.path().join("plugins"));
        std::fs::create_dir_all(&plugins).unwrap();
        let w = World { stack, tenant: unique(prefix), topic: unique("events-"), database: unique("db"), sink, plugins, _dir: dir };
        let doc_file = w._dir.path().join("feed.json");
        std::fs::write(&doc_file, serde_json::to_vec(&live_doc(&w.tenant)).unwrap()).unwrap();
        w.scenario(&["set", doc_file.to_str().unwrap()]);
        w.stack.create_topic(&w.topic, 1);
        w
    }

    /// `rtscore scenario <args>` against this world's database.
    fn scenario(&self, args: &[&str]) -> String {
        let mut all = vec!["scenario"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--mongodb-url", &self.stack.mongodb_url, "--mongodb-database", &self.database]);
        cli(&all)
    }

    /// Publishes a plugin crate's module into the host's plugins directory; returns its bytes.
    fn publish(&self, crate_name: &str) -> Vec<u8> {
        let module = plugins::module(crate_name);
        std::fs::write(self.plugins.join(format!("{crate_name}@0.1.0.wasm")), &module).unwrap();
        module
    }

    /// A host on the world's topic, database, Redis and plugins, writing the JSONL sink.
    fn host(&self) -> Host {
        Host::run()
            .kafka(&self.stack, &self.topic, &unique("g"))
            .mongo(&self.stack, &self.database)
            .redis(&self.stack)
            .plugins_dir(&self.plugins)
            .jsonl_out(&self.sink)
            .view_off()
            .config_poll_ms(100)
    }

    /// Produces `events` for `{tenant}/feed`.
    fn produce(&self, events: &[RefEvent]) {
        let lines: Vec<Vec<u8>> = events.iter().map(|e| event_line(&self.tenant, "feed", &e.item_id, &e.action, e.ts)).collect();
        self.stack.produce(&self.topic, 1, &lines);
    }

    fn status(&self, redis: &mut redis::Connection) -> BTreeMap<String, String> {
        status_of(redis, &self.tenant, "feed")
    }
}

fn windows_through(sink: &Path, kind: &str, end: i64) -> bool {
    read_hot_sink(sink).1.iter().any(|r| r["kind"] == kind && r["window_end"].as_i64().is_some_and(|e| e >= end))
}

#[test]
fn shadow_candidate_then_promote_and_rollback_while_events_flow() {
    let w = World::new("ro");
    let (tenant, sink) = (&w.tenant, &w.sink);
    let port = free_port();
    let mut host = w.host().http(port).start();
    let mut redis = w.stack.redis();
    let revision_is = |redis: &mut redis::Connection, r: &str| {
        wait_until(Duration::from_secs(10), || w.status(redis).get("config_revision").map(String::as_str) == Some(r))
    };
    let id = ["--tenant-id", tenant.as_str(), "--scenario-id", "feed"];

    // Revision 1, live only.
    let phase1 = traffic(1, T0, T0 + 22 * MIN, &ACTIONS);
    w.produce(&phase1);
    assert!(wait_until(Duration::from_secs(30), || windows_through(sink, "hot", T0 + 20 * MIN)), "{}", host.log());

    // Revision 2 adds a candidate: it runs in shadow.
    w.scenario(&[&["patch", "--immediately", "--body", CANDIDATE][..], &id].concat());
    assert!(revision_is(&mut redis, "2"), "{}", host.log());
    let phase2 = traffic(2, T0 + 22 * MIN, T0 + 42 * MIN, &ACTIONS);
    w.produce(&phase2);
    assert!(wait_until(Duration::from_secs(30), || windows_through(sink, "shadow", T0 + 40 * MIN)), "{}", host.log());
    let meta: BTreeMap<String, String> = redis.hgetall(format!("rt:{tenant}:feed:hot:shadow:meta")).unwrap();
    assert!(meta.get("overlap_at_k").and_then(|v| v.parse::<f64>().ok()).is_some(), "shadow meta: {meta:?}");
    let shadow_zset: Vec<(String, f64)> = redis.zrevrange_withscores(format!("rt:{tenant}:feed:hot:shadow"), 0, -1).unwrap();
    assert!(!shadow_zset.is_empty() && shadow_zset.len() <= 8, "the candidate's top_n applies: {shadow_zset:?}");
    // The status key follows within a tick.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = w.status(&mut redis);
            st.get("shadow_overlap_at_k").is_some_and(|v| !v.is_empty()) && st["candidate"] == "builtin"
        }),
        "status: {:?}",
        w.status(&mut redis)
    );

    let metrics = http_get(port, "/metrics").unwrap_or_default();
    for m in ["rtscore_shadow_overlap_at_k", "rtscore_shadow_rbo", "rtscore_shadow_drift_p90"] {
        assert!(metrics.lines().any(|l| l.starts_with(m) && l.contains(tenant.as_str())), "no {m} in /metrics");
    }

    // Revision 3: promoted. Revision 4: rolled back to revision 2 (live weights, candidate in shadow).
    w.scenario(&[&["promote", "--immediately"][..], &id].concat());
    assert!(revision_is(&mut redis, "3"), "{}", host.log());
    let phase3 = traffic(3, T0 + 42 * MIN, T0 + 62 * MIN, &ACTIONS);
    w.produce(&phase3);
    assert!(wait_until(Duration::from_secs(30), || windows_through(sink, "hot", T0 + 60 * MIN)), "{}", host.log());
    // The promoted candidate has no shadow any more: its keys are gone, the sink says from when.
    let shadow_keys: i64 = redis.exists(&[format!("rt:{tenant}:feed:hot:shadow"), format!("rt:{tenant}:feed:hot:shadow:meta")]).unwrap();
    assert_eq!(shadow_keys, 0);
    let (_, records) = read_hot_sink(sink);
    let first_rev3 = records.iter().find(|r| r["kind"] == "hot" && r["config_revision"] == 3).map(|r| r["window_end"].clone());
    let ended: Vec<_> = records.iter().filter(|r| r["kind"] == "shadow_end").map(|r| r["window_end"].clone()).collect();
    assert_eq!(ended, vec![first_rev3.unwrap()]);
    w.scenario(&[&["rollback", "--immediately"][..], &id].concat());
    assert!(revision_is(&mut redis, "4"), "{}", host.log());
    let phase4 = traffic(4, T0 + 62 * MIN, T0 + 82 * MIN, &ACTIONS);
    w.produce(&phase4);
    assert!(wait_until(Duration::from_secs(30), || windows_through(sink, "shadow", T0 + 80 * MIN)), "{}", host.log());
    assert!(host.stop().success());

    let history = w.scenario(&[&["history", "--json"][..], &id].concat());
    let revisions: Vec<i64> =
        history.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["revision"].as_i64()).collect();
    assert_eq!(revisions, vec![1, 2, 3, 4], "{history}");

    // Every window matches the reference of what it claims: live lists the live weights of
    // their revision (the candidate's after the promotion), shadow lists the candidate's.
    let mut with_candidate = live_doc(tenant);
    with_candidate["candidate"] = serde_json::from_str::<serde_json::Value>(CANDIDATE).unwrap()["candidate"].clone();
    let all: Vec<RefEvent> = phase1.iter().chain(&phase2).chain(&phase3).chain(&phase4).cloned().collect();
    let live = hot_lists(&all, &hot_cfg(&live_doc(tenant)));
    let candidate = hot_lists(&all, &candidate_cfg(&with_candidate));
    let (_, records) = read_hot_sink(sink);
    let hot = check_against_reference(&records, "hot", |r| if r["config_revision"] == 3 { &candidate } else { &live });
    let shadow = check_against_reference(&records, "shadow", |r| {
        assert!(r["config_revision"] == 2 || r["config_revision"] == 4, "shadow only while a candidate exists: {r}");
        &candidate
    });
    assert!(hot > 10 && shadow > 4, "{hot} hot and {shadow} shadow windows");
    for rev in 1..=4 {
        assert!(records.iter().any(|r| r["kind"] == "hot" && r["config_revision"] == rev), "no window under revision {rev}");
    }
    let ends: Vec<i64> = records.iter().filter(|r| r["kind"] == "hot").map(|r| r["window_end"].as_i64().unwrap()).collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "each window once, in order");
    assert!(
        records.iter().filter(|r| r["kind"] == "shadow").all(|r| r["overlap_at_k"].is_number() && r["rbo"].is_number()),
        "shadow records carry the comparison"
    );
}

#[test]
fn a_revision_takes_effect_exactly_at_the_agreed_window_end() {
    let w = World::new("sw");
    let (tenant, sink) = (&w.tenant, &w.sink);
    // The new revision also moves to a plugin (one that reproduces the built-in formula): its
    // module is loaded before the switch, so the first window of the revision is scored by it.
    let module = w.publish("decay-weighted");
    let mut host = w.host().start();
    let mut redis = w.stack.redis();

    let phase1 = traffic(5, T0, T0 + 23 * MIN, &ACTIONS);
    w.produce(&phase1);
    assert!(wait_until(Duration::from_secs(30), || windows_through(sink, "hot", T0 + 20 * MIN)), "{}", host.log());
    let progress = |redis: &mut redis::Connection| w.status(redis).get("watermark").and_then(|wm| wm.parse::<i64>().ok());
    assert!(wait_until(Duration::from_secs(10), || progress(&mut redis).is_some_and(|w| w >= T0 + 22 * MIN)), "{}", host.log());

    // The default: the writer picks the first window end a margin past what the hosts report.
    let out = w.scenario(&[
        "patch",
        "--redis-url",
        &w.stack.redis_url,
        "--margin-ms",
        "300000",
        "--tenant-id",
        tenant,
        "--scenario-id",
        "feed",
        "--body",
        &format!(
            r#"{{"config":{{"realtime_compute":{{"hot_score":{{"action_weights":{{"click":20}},"plugin":{{"name":"decay-weighted","version":"0.1.0","sha256":"{}"}}}}}}}}}}"#,
            sha256_hex(&module)
        ),
    ]);
    let stored = w.scenario(&["get", "--tenant-id", tenant, "--scenario-id", "feed"]);
    let doc_v2: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let effective = doc_v2["effective_from_window_end"].as_i64().unwrap_or_else(|| panic!("no effective time: {out}"));
    // Watermark ~T0 + 22:50; + 5 min margin -> the first 5-minute boundary after ~T0 + 27:50.
    assert_eq!(effective, T0 + 30 * MIN, "{out}");
    assert!(out.contains(&format!("effective from window end {effective}")), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || w.status(&mut redis).get("pending_revision").map(String::as_str) == Some("2")),
        "{:?}\n{}",
        w.status(&mut redis),
        host.log()
    );
    assert_eq!(w.status(&mut redis)["config_revision"], "1", "revision 1 serves until the effective window");
    // Its module is prepared ahead of the switch.
    assert!(
        wait_until(Duration::from_secs(20), || w
            .status(&mut redis)
            .get("pending_plugin_state")
            .is_some_and(|s| s == "active decay-weighted@0.1.0")),
        "{:?}\n{}",
        w.status(&mut redis),
        host.log()
    );

    let phase2 = traffic(6, T0 + 23 * MIN, T0 + 45 * MIN, &ACTIONS);
    w.produce(&phase2);
    assert!(wait_until(Duration::from_secs(30), || windows_through(sink, "hot", T0 + 40 * MIN)), "{}", host.log());
    assert!(host.stop().success());

    let all: Vec<RefEvent> = phase1.iter().chain(&phase2).cloned().collect();
    let (want_v1, want_v2) = (hot_lists(&all, &hot_cfg(&live_doc(tenant))), hot_lists(&all, &hot_cfg(&doc_v2)));
    let (_, records) = read_hot_sink(sink);
    for r in records.iter().filter(|r| r["kind"] == "hot") {
        let (expected, plugin) =
            if r["window_end"].as_i64().unwrap() < effective { (1, serde_json::Value::Null) } else { (2, "decay-weighted@0.1.0".into()) };
        assert_eq!(r["config_revision"], expected, "window {} switched at the wrong time", r["window_end"]);
        assert_eq!(r["plugin"], plugin, "window {} scored by the wrong module", r["window_end"]);
    }
    let checked = check_against_reference(&records, "hot", |r| if r["config_revision"] == 1 { &want_v1 } else { &want_v2 });
    assert!(checked >= 8);
}

/// A backtest of the vector events with `edit` applied to every vector scenario document.
fn replay(edit: impl Fn(&mut serde_json::Value), plugins: &Path, out: &Path) -> String {
    let scenarios = out.with_extension("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    for e in std::fs::read_dir(vectors().join("scenarios")).unwrap() {
        let p = e.unwrap().path();
        let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        edit(&mut doc);
        std::fs::write(scenarios.join(p.file_name().unwrap()), serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    let res = Host::run()
        .view_off()
        .events_file(vectors().join("events.jsonl"))
        .scenarios_dir(&scenarios)
        .plugins_dir(plugins)
        .jsonl_out(out)
        .output();
    let log = String::from_utf8_lossy(&res.stderr).into_owned();
    assert!(res.status.success(), "{log}");
    log
}

/// The lists of one kind of a sink, by (tenant/scenario, window end).
fn lists_of(records: &[serde_json::Value], kind: &str) -> SinkWindows {
    records
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| {
            let key = format!("{}/{}", r["tenant_id"].as_str().unwrap(), r["scenario_id"].as_str().unwrap());
            let items =
                r["items"].as_array().unwrap().iter().map(|i| (i["item_id"].as_str().unwrap().into(), i["score"].as_f64().unwrap()));
            ((key, r["window_end"].as_i64().unwrap()), items.collect())
        })
        .collect()
}

#[test]
fn failing_candidates_never_touch_the_live_output_and_shadow_backtests_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let trap = plugins::module("test-trap");
    std::fs::write(plugins.join("test-trap@0.1.0.wasm"), &trap).unwrap();
    let (want_live, _) = read_hot_sink(&vectors().join("expected.jsonl"));
    let live_unchanged = |records: &[serde_json::Value]| {
        let diffs = hot_differences(&want_live, &lists_of(records, "hot"), 1e-3);
        assert!(diffs.is_empty(), "live output moved: {:?}", &diffs[..diffs.len().min(5)]);
    };

    // A candidate module that traps after its first call: contained in the shadow lane.
    let trapping =
        serde_json::json!({"plugin": {"name": "test-trap", "version": "0.1.0", "sha256": sha256_hex(&trap), "params": {"ok_calls": 1}}});
    let with = |cand: serde_json::Value| move |d: &mut serde_json::Value| d["candidate"] = cand.clone();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let log = replay(with(trapping.clone()), &plugins, &a);
    let (_, records) = read_hot_sink(&a);
    live_unchanged(&records);
    assert!(records.iter().filter(|r| r["kind"] == "hot").all(|r| r["plugin"].is_null()));
    let shadow: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "shadow").collect();
    assert!(shadow.iter().any(|r| r["plugin"] == "test-trap@0.1.0"), "the candidate scored its first window");
    assert!(shadow.iter().any(|r| r["plugin"].is_null()), "then fell back to the built-in formula");
    assert!(log.contains("test-trap: deliberate panic"), "the trap is reported: {log}");
    // Shadow backtests are replays too: byte for byte the same.
    replay(with(trapping), &plugins, &b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // A candidate that fails validation: refused on its own; live and its revision unaffected.
    let c = dir.path().join("c.jsonl");
    let log = replay(with(serde_json::json!({"hot_score": {"decay_lambda": "fast"}})), &plugins, &c);
    let (_, records) = read_hot_sink(&c);
    live_unchanged(&records);
    assert!(records.iter().all(|r| r["kind"] != "shadow"), "an invalid candidate has no shadow");
    assert!(!log.contains("invalid scenario document"), "the live document stays valid: {log}");

    // A valid candidate: its shadow lists equal a backtest with the candidate promoted.
    let cand = serde_json::json!({"hot_score": {"action_weights": {"purchase": 30.0, "view": 0.0}, "decay_lambda": 0.7, "top_n": 5}});
    let (d, e) = (dir.path().join("d.jsonl"), dir.path().join("e.jsonl"));
    replay(with(cand.clone()), &plugins, &d);
    replay(
        |doc| {
            doc["candidate"] = cand.clone();
            *doc = rtscore::config::history::promoted(doc).unwrap();
        },
        &plugins,
        &e,
    );
    let (_, records) = read_hot_sink(&d);
    live_unchanged(&records);
    let (shadow, promoted) = (lists_of(&records, "shadow"), lists_of(&read_hot_sink(&e).1, "hot"));
    assert_eq!(shadow.len(), promoted.len());
    let diffs = hot_differences(&promoted, &shadow, 1e-9);
    assert!(diffs.is_empty(), "{:?}", &diffs[..diffs.len().min(5)]);
    assert!(records.iter().filter(|r| r["kind"] == "shadow").any(|r| r["overlap_at_k"].as_f64().unwrap() < 1.0));
}

#[test]
fn tenant_quotas_refuse_and_report_without_touching_other_tenants() {
    // Tenant z (the world's, scenario feed) has no quotas of its own; q and o have tight ones.
    let w = World::new("z");
    let (stack, z, sink) = (&w.stack, &w.tenant, &w.sink);
    let (q, o) = (unique("q"), unique("o"));
    let (spin, gravity) = (w.publish("test-spin"), w.publish("gravity"));
    w.scenario(&["quotas", "--tenant-id", &q, "--body", r#"{"quotas":{"max_scenarios":2,"cpu_ms_per_window":5}}"#]);
    w.scenario(&["quotas", "--tenant-id", &o, "--body", r#"{"quotas":{"max_module_bytes":1000}}"#]);
    let doc = |t: &str, s: &str, plugin: Option<(&str, &[u8])>| {
        let mut d = live_doc(t);
        d["scenario_id"] = s.into();
        if let Some((name, module)) = plugin {
            d["config"]["realtime_compute"]["hot_score"]["plugin"] =
                serde_json::json!({"name": name, "version": "0.1.0", "sha256": sha256_hex(module)});
        }
        d
    };
    stack.put_scenarios(
        &w.database,
        &[doc(&q, "a", Some(("test-spin", &spin))), doc(&q, "b", None), doc(&o, "a", Some(("gravity", &gravity)))],
    );
    let port = free_port();
    let mut host = w.host().http(port).start();
    let mut redis = stack.redis();
    assert!(wait_until(Duration::from_secs(15), || !status_of(&mut redis, &q, "b").is_empty()), "{}", host.log());
    // A third active scenario is one too many for tenant q.
    stack.put_scenarios(&w.database, &[doc(&q, "c", None)]);
    assert!(
        wait_until(Duration::from_secs(10), || status_of(&mut redis, &q, "c")
            .get("last_error")
            .is_some_and(|e| e.contains("max_scenarios"))),
        "{:?}\n{}",
        status_of(&mut redis, &q, "c"),
        host.log()
    );

    let events: Vec<RefEvent> = traffic(9, T0, T0 + 21 * MIN, &ACTIONS);
    // In event-time order across scenarios: the watermark is the partition's.
    let lines: Vec<Vec<u8>> = events
        .iter()
        .flat_map(|e| [(&q, "a"), (&q, "b"), (&q, "c"), (&o, "a"), (z, "feed")].map(|(t, s)| event_line(t, s, &e.item_id, &e.action, e.ts)))
        .collect();
    stack.produce(&w.topic, 1, &lines);
    let seen = |t: &str, s: &str| read_hot_sink(sink).0.keys().filter(|(k, _)| *k == format!("{t}/{s}")).count();
    assert!(wait_until(Duration::from_secs(30), || seen(z, "feed") >= 3 && seen(&q, "a") >= 3 && seen(&o, "a") >= 3), "{}", host.log());
    assert!(
        wait_until(Duration::from_secs(10), || status_of(&mut redis, &q, "a")
            .get("plugin_error")
            .is_some_and(|e| e.contains("CPU budget of 5 ms"))),
        "the tenant's CPU budget applies: {:?}",
        status_of(&mut redis, &q, "a")
    );
    assert!(status_of(&mut redis, &o, "a")["last_error"].contains("max_module_bytes"), "{:?}", status_of(&mut redis, &o, "a"));
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    for (tenant, quota) in [(&q, "max_scenarios"), (&q, "cpu_ms_per_window"), (&o, "max_module_bytes")] {
        assert!(
            metrics.lines().any(|l| l.starts_with("rtscore_quota_exceeded_total") && l.contains(tenant.as_str()) && l.contains(quota)),
            "no {quota} metric for {tenant}:\n{}",
            metrics.lines().filter(|l| l.contains("quota")).collect::<Vec<_>>().join("\n")
        );
    }
    assert!(host.stop().success());

    // Nothing crashed, the refused scenario emitted nothing, and every emitted list (the
    // over-budget ones scored by the built-in fallback) matches the reference.
    assert_eq!(seen(&q, "c"), 0);
    let want = hot_lists(&events, &hot_cfg(&live_doc(z)));
    let (_, records) = read_hot_sink(sink);
    assert!(check_against_reference(&records, "hot", |_| &want) >= 12);
}
