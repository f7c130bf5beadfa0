//! Config changes reach a running host without restart (DESIGN §3, §4, §7), on the real stack.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;
use rtscore::config::HotScoreConfig;
use rtscore::config::parse_scenario;
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const ACTIONS: [&str; 4] = ["view", "click", "like", "purchase"];

fn traffic(seed: u64, from: i64, to: i64) -> Vec<RefEvent> {
    fixtures::traffic(seed, from, to, &ACTIONS)
}

fn hot_cfg(doc: &serde_json::Value) -> HotScoreConfig {
    parse_scenario(doc).unwrap().hot_score
}

#[test]
fn weight_change_applies_to_the_whole_next_window_and_invalid_documents_keep_the_last_valid() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("cr"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    let doc_v1 = serde_json::json!({"tenant_id": tenant, "scenario_id": "feed", "revision": 1, "config": {"realtime_compute": {"hot_score": {
        "action_weights": {"view": 1.0, "click": 2.0, "like": 3.0, "purchase": 10.0},
        "decay_lambda": 0.5, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}});
    stack.put_scenarios(&database, std::slice::from_ref(&doc_v1));
    stack.create_topic(&topic, 1);
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .mongo(&stack, &database)
        .redis(&stack)
        .jsonl_out(&sink)
        .view_off()
        .config_poll_ms(100)
        .start();
    let line = |e: &RefEvent| event_line(&tenant, "feed", &e.item_id, &e.action, e.ts);
    let mut redis = stack.redis();
    let status = |redis: &mut redis::Connection| -> BTreeMap<String, String> {
        redis.hgetall(format!("rt:{tenant}:feed:status")).unwrap_or_default()
    };

    // Phase 1 under revision 1: windows up to about T0 + 30 min close.
    let phase1 = traffic(1, T0, T0 + 32 * MIN);
    stack.produce(&topic, 1, &phase1.iter().map(line).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.keys().any(|(_, e)| *e >= T0 + 30 * MIN)), "{}", host.log());

    // Raise the click weight with the CLI while the host runs (deep merge: only click changes).
    stack.patch_scenario(&database, &tenant, "feed", r#"{"config":{"realtime_compute":{"hot_score":{"action_weights":{"click":20}}}}}"#);
    assert!(
        wait_until(Duration::from_secs(10), || status(&mut redis).get("config_revision").map(String::as_str) == Some("2")),
        "revision 2 not applied\n{}",
        host.log()
    );
    let mut doc_v2 = doc_v1.clone();
    doc_v2["config"]["realtime_compute"]["hot_score"]["action_weights"]["click"] = 20.into();

    // Phase 2, then an invalid document written straight into MongoDB (as another tool might).
    let phase2 = traffic(2, T0 + 32 * MIN, T0 + 52 * MIN);
    stack.produce(&topic, 1, &phase2.iter().map(line).collect::<Vec<_>>());
    let mut bad = doc_v2.clone();
    bad["revision"] = 3.into();
    bad["config"]["realtime_compute"]["hot_score"]["decay_lambda"] = "fast".into();
    stack.put_scenarios(&database, &[bad]);
    assert!(
        wait_until(Duration::from_secs(10), || status(&mut redis).get("last_error").is_some_and(|e| e.contains("hot_score.decay_lambda"))),
        "status does not report the invalid document: {:?}\n{}",
        status(&mut redis),
        host.log()
    );
    assert_eq!(status(&mut redis).get("config_revision").map(String::as_str), Some("2"), "the last valid revision stays in force");
    let phase3 = traffic(3, T0 + 52 * MIN, T0 + 70 * MIN);
    stack.produce(&topic, 1, &phase3.iter().map(line).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.keys().any(|(_, e)| *e >= T0 + 65 * MIN)), "{}", host.log());
    assert!(host.stop().success());

    // Every window equals the reference computed with the weights of the revision it reports,
    // over all of its events: a new weight applies in full, including to events before it.
    let all: Vec<RefEvent> = phase1.iter().chain(&phase2).chain(&phase3).cloned().collect();
    let (want_v1, want_v2) = (hot_lists(&all, &hot_cfg(&doc_v1)), hot_lists(&all, &hot_cfg(&doc_v2)));
    let (_, records) = read_hot_sink(&sink);
    check_against_reference(&records, "hot", |r| match r["config_revision"].as_i64() {
        Some(1) => &want_v1,
        Some(2) => &want_v2,
        other => panic!("unexpected revision {other:?}"),
    });
    let spanning_v2 = records
        .iter()
        .filter(|r| r["kind"] == "hot" && r["config_revision"] == 2 && r["window_end"].as_i64().unwrap() - 10 * MIN < T0 + 32 * MIN)
        .count();
    assert!(spanning_v2 > 0, "some revision-2 window holds events from before the change");
    assert!(records.iter().any(|r| r["config_revision"] == 1) && records.iter().any(|r| r["config_revision"] == 2));
}

#[test]
fn deleted_scenario_stops_emitting_and_an_isolated_instance_ignores_other_scenarios() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("del"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let (sink_all, sink_iso) = (dir.path().join("all.jsonl"), dir.path().join("iso.jsonl"));
    let doc = |s: &str| serde_json::json!({"tenant_id": tenant, "scenario_id": s, "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}}}});
    stack.put_scenarios(&database, &[doc("a"), doc("b")]);
    stack.create_topic(&topic, 2);
    let port = free_port();
    let common = Host::run().kafka_topic(&stack, &topic).mongo(&stack, &database).view_off();
    let mut host = common.clone().group_id(&unique("g")).jsonl_out(&sink_all).config_resync_ms(300).http(port).start();
    // Its consumer group is the isolated instance's default, rtscore-<tenant>-a.
    let mut isolated = common.only(&tenant, "a").jsonl_out(&sink_iso).start();

    let batch = |from: i64, to: i64| -> Vec<Vec<u8>> {
        (from..to)
            .step_by(5_000)
            .flat_map(|ts| [event_line(&tenant, "a", "x", "click", ts), event_line(&tenant, "b", "y", "click", ts)])
            .collect()
    };
    stack.produce(&topic, 2, &batch(T0, T0 + 21 * MIN));
    let seen = |path: &std::path::Path, s: &str| read_hot_sink(path).0.keys().filter(|(k, _)| k.ends_with(&format!("/{s}"))).count();
    assert!(wait_until(Duration::from_secs(30), || seen(&sink_all, "a") >= 3 && seen(&sink_all, "b") >= 3), "{}", host.log());
    assert!(wait_until(Duration::from_secs(30), || seen(&sink_iso, "a") >= 3), "{}", isolated.log());
    assert_eq!(seen(&sink_iso, "b"), 0, "the isolated instance ignores scenario b");

    stack.scenario_cli("delete", &database, &tenant, "b", &[]);
    // The removal is visible in status (for an hour), with why.
    let gone = wait_until(Duration::from_secs(10), || {
        status_row(port, "b").is_some_and(|r| r["active"] == false && r["removed_reason"].as_str().is_some_and(|w| w.contains("gone")))
    });
    assert!(gone, "host still applies the deleted scenario, or does not say it removed it: {:?}", http_get(port, "/status"));
    let b_before = seen(&sink_all, "b");
    stack.produce(&topic, 2, &batch(T0 + 21 * MIN, T0 + 41 * MIN));
    assert!(
        wait_until(Duration::from_secs(30), || read_hot_sink(&sink_all).0.keys().any(|(k, e)| k.ends_with("/a") && *e >= T0 + 35 * MIN)),
        "{}",
        host.log()
    );
    assert_eq!(seen(&sink_all, "b"), b_before, "no windows for a deleted scenario");
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    assert!(metrics.contains("rtscore_events_unknown_scenario_total"), "events of the deleted scenario are counted");
    assert!(host.stop().success());
    assert!(isolated.stop().success());
}

/// The `/status` row of scenario `scenario`, if the host reports one.
fn status_row(port: u16, scenario: &str) -> Option<serde_json::Value> {
    let status: serde_json::Value = serde_json::from_str(&http_get(port, "/status")?).ok()?;
    status["scenarios"].as_array()?.iter().find(|r| r["scenario_id"] == scenario).cloned()
}

/// Two editors that read the same revision: the second write is a conflict naming the current
/// revision, never a silent overwrite (issue 16). On the real MongoDB protocol (FerretDB).
#[test]
fn concurrent_edits_of_one_revision_conflict_instead_of_losing_an_update() {
    use rtscore::config::history::{RolloutError, store_revision};
    use rtscore::config::store::{ConfigSource, ScenarioStore};
    use rtscore::config::switch::EffectiveFrom;
    let stack = Stack::ensure();
    let (tenant, database) = (unique("cc"), unique("db"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = ScenarioStore::open(&ConfigSource::Mongo(stack.mongodb_url.clone()), &database).await.expect("connect");
        let doc = |top_n: i64| serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"top_n": top_n}}}});
        let now = chrono::Utc::now().timestamp_millis();
        let (v1, _) = store_revision(&store, None, doc(5), &EffectiveFrom::Immediately, now).await.expect("create");
        assert!(matches!(store_revision(&store, None, doc(6), &EffectiveFrom::Immediately, now).await, Err(RolloutError::Conflict(_))), "created twice");
        // Both editors read revision 1.
        store_revision(&store, Some(&v1), doc(7), &EffectiveFrom::Immediately, now).await.expect("first editor");
        match store_revision(&store, Some(&v1), doc(8), &EffectiveFrom::Immediately, now).await {
            Err(RolloutError::Conflict(c)) => assert_eq!((c.based_on, c.current), (1, 2)),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let stored = store.get(&tenant, "s").await.unwrap().unwrap();
        assert_eq!(stored["config"]["realtime_compute"]["hot_score"]["top_n"], 7, "the first editor's update is kept");
        assert_eq!(store.history(&tenant, "s").await.unwrap().len(), 2);
    });
}

/// Several CLI processes patch one scenario of one directory at once, each over the revision
/// they read: exactly one wins, the others are told the revision moved, nothing is lost.
#[test]
fn racing_writers_in_separate_processes_never_both_win() {
    let dir = tempfile::tempdir().unwrap();
    let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "status": "active", "revision": 1,
        "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}});
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::write(scenarios.join("t.s.json"), doc.to_string()).unwrap();
    let scen = scenarios.to_string_lossy().into_owned();
    for round in 0..3 {
        let based_on = (round + 1).to_string();
        let writers: Vec<_> = (0..6)
            .map(|k| {
                let body = format!(r#"{{"config":{{"realtime_compute":{{"hot_score":{{"top_n":{}}}}}}}}}"#, 3 + k);
                rtscore_command()
                    .args(["scenario", "patch", "--scenarios-dir", &scen, "--tenant-id", "t", "--scenario-id", "s", "--immediately"])
                    .args(["--if-revision", &based_on, "--body", &body])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start rtscore scenario patch")
            })
            .collect();
        let outcomes: Vec<_> = writers.into_iter().map(|w| w.wait_with_output().unwrap()).collect();
        let won = outcomes.iter().filter(|o| o.status.success()).count();
        let stderr: Vec<String> = outcomes.iter().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).collect();
        assert_eq!(won, 1, "round {round}: {stderr:?}");
        assert!(stderr.iter().filter(|e| !e.is_empty()).all(|e| e.contains("revision")), "{stderr:?}");
    }
    let out =
        rtscore_command().args(["scenario", "get", "--scenarios-dir", &scen, "--tenant-id", "t", "--scenario-id", "s"]).output().unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored["revision"], 4);
}

/// `run`, `scenario` and `plugin share` pick the store by one rule: an explicit
/// --scenarios-dir wins over MONGODB_URL (here one that nothing answers).
#[test]
fn an_explicit_scenarios_dir_wins_over_mongodb_url_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "from-dir", "status": "active", "revision": 1,
        "config": {"realtime_compute": {"hot_score": {}}}});
    std::fs::write(scenarios.join("t.from-dir.json"), doc.to_string()).unwrap();
    let out = rtscore_command()
        .args(["scenario", "list", "--scenarios-dir", scenarios.to_str().unwrap()])
        .env("MONGODB_URL", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("from-dir"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// `$set` on one stored scenario straight into MongoDB, as the seed's admin service does
/// (`scenarios.update_one({...}, {"$set": {"config.realtime_compute": ...}})`): no revision bump,
/// no `updated_at`, so the host sees it at its next resync.
fn mongo_set(stack: &Stack, database: &str, tenant: &str, scenario: &str, set: serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = mongodb::Client::with_uri_str(&stack.mongodb_url).await.unwrap();
        let scenarios = client.database(database).collection::<bson::Document>("scenarios");
        let set = bson::to_document(&set).unwrap();
        let r = scenarios.update_one(bson::doc! {"tenant_id": tenant, "scenario_id": scenario}, bson::doc! {"$set": set}).await.unwrap();
        assert_eq!(r.matched_count, 1, "no stored {tenant}/{scenario}");
    });
}

#[test]
fn misspelt_fields_and_partial_weight_maps_written_straight_into_mongodb_keep_the_last_valid_config() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("strict"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    // A platform document: its own fields beside rtscore's (warnings, not errors).
    let doc_v1 = serde_json::json!({"tenant_id": tenant, "scenario_id": "feed", "revision": 1, "name": "Feed", "owner": "growth",
        "config": {"recall": {"k": 200}, "realtime_compute": {"hot_score": {
        "action_weights": {"view": 1.0, "click": 2.0, "like": 3.0, "purchase": 10.0},
        "decay_lambda": 0.5, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}});
    stack.put_scenarios(&database, std::slice::from_ref(&doc_v1));
    stack.create_topic(&topic, 1);
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .mongo(&stack, &database)
        .redis(&stack)
        .jsonl_out(&sink)
        .view_off()
        .config_poll_ms(100)
        .config_resync_ms(300)
        .start();
    let line = |e: &RefEvent| event_line(&tenant, "feed", &e.item_id, &e.action, e.ts);
    let mut redis = stack.redis();
    let mut status = || -> BTreeMap<String, String> { redis.hgetall(format!("rt:{tenant}:feed:status")).unwrap_or_default() };
    let phase1 = traffic(11, T0, T0 + 22 * MIN);
    stack.produce(&topic, 1, &phase1.iter().map(line).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.keys().any(|(_, e)| *e >= T0 + 20 * MIN)), "{}", host.log());
    assert_eq!(status().get("config_revision").map(String::as_str), Some("1"));
    assert!(host.log().contains("owner: platform field"), "the platform field is logged as a warning\n{}", host.log());

    // A misspelt field is refused with a suggestion; revision 1 stays in force.
    let mut typo = doc_v1.clone();
    typo["revision"] = 2.into();
    typo["config"]["realtime_compute"]["hot_score"]["decay_lamda"] = 0.05.into();
    stack.put_scenarios(&database, &[typo]);
    let said = |s: &BTreeMap<String, String>, what: &str| s.get("last_error").is_some_and(|e| e.contains(what));
    assert!(
        wait_until(Duration::from_secs(10), || said(&status(), r#"hot_score.decay_lamda: unknown field; did you mean "decay_lambda"?"#)),
        "status does not report the typo: {:?}\n{}",
        status(),
        host.log()
    );
    assert_eq!(status().get("config_revision").map(String::as_str), Some("1"));

    // The seed's own `$set {"config.realtime_compute": {...partial...}}`: refused with the list.
    let partial = serde_json::json!({"hot_score": {"action_weights": {"purchase": 15.0},
        "decay_lambda": 0.5, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}});
    mongo_set(&stack, &database, &tenant, "feed", serde_json::json!({"config.realtime_compute": partial}));
    assert!(
        wait_until(Duration::from_secs(10), || said(
            &status(),
            "hot_score.action_weights: drops actions weighted in revision 1: click, like, view"
        )),
        "status does not report the dropped weights: {:?}\n{}",
        status(),
        host.log()
    );
    assert_eq!(status().get("config_revision").map(String::as_str), Some("1"), "the last valid revision stays in force");
    let phase2 = traffic(12, T0 + 22 * MIN, T0 + 42 * MIN);
    stack.produce(&topic, 1, &phase2.iter().map(line).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.keys().any(|(_, e)| *e >= T0 + 40 * MIN)), "{}", host.log());
    assert_eq!(status().get("config_revision").map(String::as_str), Some("1"));

    // The writer says so: the marker makes the same map apply (revision 2, purchase alone).
    mongo_set(&stack, &database, &tenant, "feed", serde_json::json!({"replace_weights": true}));
    assert!(
        wait_until(Duration::from_secs(10), || status().get("config_revision").map(String::as_str) == Some("2")),
        "the marked document is not applied: {:?}\n{}",
        status(),
        host.log()
    );
    assert_eq!(status().get("last_error").map(String::as_str), Some(""), "the refusal is cleared");
    let phase3 = traffic(13, T0 + 42 * MIN, T0 + 60 * MIN);
    stack.produce(&topic, 1, &phase3.iter().map(line).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.keys().any(|(_, e)| *e >= T0 + 55 * MIN)), "{}", host.log());
    assert!(host.stop().success());

    // Every window equals the reference under the weights of the revision it reports.
    let all: Vec<RefEvent> = phase1.iter().chain(&phase2).chain(&phase3).cloned().collect();
    let mut doc_v2 = doc_v1.clone();
    doc_v2["config"]["realtime_compute"]["hot_score"]["action_weights"] = serde_json::json!({"purchase": 15.0});
    let (want_v1, want_v2) = (hot_lists(&all, &hot_cfg(&doc_v1)), hot_lists(&all, &hot_cfg(&doc_v2)));
    let (_, records) = read_hot_sink(&sink);
    check_against_reference(&records, "hot", |r| match r["config_revision"].as_i64() {
        Some(1) => &want_v1,
        Some(2) => &want_v2,
        other => panic!("unexpected revision {other:?}"),
    });
    assert!(records.iter().any(|r| r["config_revision"] == 2 && r["window_end"].as_i64().unwrap() >= T0 + 45 * MIN));
    assert!(
        !records.iter().any(|r| r["config_revision"] == 2 && r["window_end"].as_i64().unwrap() <= T0 + 40 * MIN),
        "no window emitted while the partial map was refused used it"
    );
}
