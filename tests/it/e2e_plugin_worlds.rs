//! Metrics plugins end to end (docs/plugins.md, "Metrics plugins"): events through Kafka, a
//! `completion-rate` module from a watched plugins directory, its values in Redis beside the
//! built-in metrics; a module referenced from the wrong section refused with its world named;
//! a changed reference taking effect without a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

#[test]
fn a_metrics_plugin_writes_beside_the_built_in_metrics_and_hot_deploys() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("mw"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("completion-rate@0.1.0.wasm"), plugins::module("completion-rate")).unwrap();
    std::fs::write(dir.path().join("gravity@0.1.0.wasm"), plugins::module("gravity")).unwrap();
    let completion = serde_json::json!({"name": "completion-rate", "version": "0.1.0", "params": {}});
    let gravity = serde_json::json!({"name": "gravity", "version": "0.1.0"});
    stack.put_scenarios(
        &database,
        &[
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
                "metrics": {"window_size_minutes": 10, "metrics_to_calculate": ["ctr"], "plugin": completion}}}}),
            // Both references in the wrong section: each refused, the built-in paths run.
            serde_json::json!({"tenant_id": tenant, "scenario_id": "w", "revision": 1, "config": {"realtime_compute": {
                "hot_score": {"plugin": completion}, "metrics": {"window_size_minutes": 10, "plugin": gravity}}}}),
        ],
    );
    stack.create_topic(&topic, 1);
    let ev = |s: &str, item: &str, action: &str, ts: i64| event_line(&tenant, s, item, action, ts);
    // [T0, T0+10m): a 4 plays 3 completes, b 2 plays, c 1 complete (no plays: no rate).
    let mut lines: Vec<Vec<u8>> = (0..4).map(|k| ev("s", "a", "play", T0 + k * MIN)).collect();
    lines.extend((0..3).map(|k| ev("s", "a", "complete", T0 + (k + 4) * MIN)));
    lines.extend([ev("s", "b", "play", T0), ev("s", "b", "play", T0 + MIN), ev("s", "c", "complete", T0 + 2 * MIN)]);
    lines.extend([ev("w", "a", "play", T0), ev("w", "z", "noop", T0 + 30 * MIN), ev("s", "z", "noop", T0 + 30 * MIN)]);
    stack.produce(&topic, 1, &lines);

    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .job("all")
        .mongo(&stack, &database)
        .redis(&stack)
        .plugins_dir(dir.path())
        .config_poll_ms(100)
        .view_off()
        .start();
    let mut redis = stack.redis();
    let key = |s: &str, start: i64| format!("rt:{tenant}:{s}:metrics:{start}");
    // A debug host compiles each module in seconds, before the first event.
    assert!(wait_until(Duration::from_secs(120), || redis.exists::<_, bool>(key("s", T0)).unwrap_or(false)), "{}", host.log());
    let m: BTreeMap<String, String> = redis.hgetall(key("s", T0)).unwrap();
    assert_eq!(m["plugin"], "completion-rate@0.1.0");
    assert!((m["plugin:completion_rate"].parse::<f64>().unwrap() - 4.0 / 6.0).abs() < 1e-12, "{m:?}");
    assert_eq!(m["count:play"], "6", "the built-in metrics are written too");
    let items: BTreeMap<String, String> = redis.hgetall(format!("{}:plugin_items", key("s", T0))).unwrap();
    assert_eq!(items.keys().collect::<Vec<_>>(), ["a", "b"], "c has no plays");
    let rate = |v: &str| serde_json::from_str::<serde_json::Value>(v).unwrap()["completion_rate"].as_f64().unwrap();
    assert_eq!((rate(&items["a"]), rate(&items["b"])), (0.75, 0.0));
    let status = |s: &str| -> BTreeMap<String, String> { stack.redis().hgetall(format!("rt:{tenant}:{s}:status")).unwrap() };
    let st = status("s");
    assert_eq!(st["metrics_plugin"], "completion-rate@0.1.0");
    assert!(st["metrics_plugin_state"].starts_with("active"), "{st:?}");

    // The wrong sections: refused with the world named, built-in metrics still written.
    assert!(wait_until(Duration::from_secs(30), || redis.exists::<_, bool>(key("w", T0)).unwrap_or(false)), "{}", host.log());
    let w: BTreeMap<String, String> = redis.hgetall(key("w", T0)).unwrap();
    assert!(!w.contains_key("plugin") && w["count:play"] == "1", "{w:?}");
    let st = status("w");
    assert!(st["metrics_plugin_state"].starts_with("quarantined"), "{st:?}");
    assert!(st["metrics_plugin_error"].contains("world `scorer`") && st["metrics_plugin_error"].contains("metrics.plugin"), "{st:?}");
    assert!(st["plugin_state"].starts_with("quarantined"), "{st:?}");
    assert!(st["plugin_error"].contains("implements world `metrics`") && st["plugin_error"].contains("hot_score.plugin"), "{st:?}");

    // Hot deploy: new params, no restart. `view` now starts and `play` completes.
    stack.patch_scenario(
        &database,
        &tenant,
        "s",
        r#"{"config":{"realtime_compute":{"metrics":{"plugin":{"name":"completion-rate","version":"0.1.0","params":{"start":"view","complete":"play"}}}}}}"#,
    );
    assert!(
        wait_until(Duration::from_secs(15), || status("s").get("config_revision").map(String::as_str) == Some("2")),
        "revision 2 not applied\n{}",
        host.log()
    );
    stack.produce(
        &topic,
        1,
        &[
            ev("s", "a", "view", T0 + 31 * MIN),
            ev("s", "a", "view", T0 + 32 * MIN),
            ev("s", "a", "play", T0 + 33 * MIN),
            ev("s", "z", "noop", T0 + 60 * MIN),
        ],
    );
    let later = format!("{}:plugin_items", key("s", T0 + 30 * MIN));
    assert!(wait_until(Duration::from_secs(60), || redis.exists::<_, bool>(&later).unwrap_or(false)), "{}", host.log());
    let items: BTreeMap<String, String> = redis.hgetall(&later).unwrap();
    assert_eq!(rate(&items["a"]), 0.5, "{items:?}");
    assert!(host.stop().success());
}

const DAY: i64 = 86_400_000;

/// One event of `user` in scenario `s` with an optional category and watch time, and a tag
/// the built-in update would score (dwell-affinity does not).
fn profile_line(tenant: &str, s: &str, user: &str, action: &str, ts: i64, category: Option<&str>, watch: Option<f64>) -> Vec<u8> {
    let mut v = serde_json::json!({"tenant_id": tenant, "scenario_id": s, "user_id": user, "item_id": format!("i{}", ts % 7),
        "action": action, "ts": ts, "tags": ["tagged"]});
    if let Some(c) = category {
        v["category"] = c.into();
    }
    if let Some(w) = watch {
        v["watch_time_ms"] = w.into();
    }
    serde_json::to_vec(&v).unwrap()
}

/// dwell-affinity's interests, computed here: per event with a category, weight times dwell
/// (watch time over the unit, clamped; `min` without one), decayed from the event to `at`. As
/// decay is exponential, this holds whatever the writes in between were.
fn dwell_reference(
    events: &[(&str, i64, Option<&str>, Option<f64>)],
    weights: &BTreeMap<&str, f64>,
    unit: f64,
    at: i64,
) -> BTreeMap<String, f64> {
    let (min, max, half_life_days) = (0.25, 4.0, 1.0);
    let mut want = BTreeMap::new();
    for &(action, ts, category, watch) in events {
        let (Some(c), Some(w)) = (category, weights.get(action)) else { continue };
        let dwell = watch.map_or(min, |ms| (ms / unit).clamp(min, max));
        *want.entry(c.to_string()).or_insert(0.0) += w * dwell * 0.5f64.powf((at - ts) as f64 / (half_life_days * DAY as f64));
    }
    want
}

#[test]
fn a_profile_plugin_writes_its_interests_is_refused_from_the_wrong_section_and_hot_deploys() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("pw"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dwell-affinity@0.1.0.wasm"), plugins::module("dwell-affinity")).unwrap();
    std::fs::write(dir.path().join("gravity@0.1.0.wasm"), plugins::module("gravity")).unwrap();
    let weights = BTreeMap::from([("view", 1.0), ("like", 3.0)]);
    let profile = |plugin: serde_json::Value| serde_json::json!({"update_frequency_minutes": 5, "interest_decay_days": 1.0, "behavior_weights": weights, "plugin": plugin});
    stack.put_scenarios(
        &database,
        &[
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
                "user_profile": profile(serde_json::json!({"name": "dwell-affinity", "version": "0.1.0"}))}}}),
            // A scorer referenced as a profile plugin: refused, the built-in interests written.
            serde_json::json!({"tenant_id": tenant, "scenario_id": "w", "revision": 1, "config": {"realtime_compute": {
                "user_profile": profile(serde_json::json!({"name": "gravity", "version": "0.1.0"}))}}}),
        ],
    );
    stack.create_topic(&topic, 1);
    let u1 = [
        ("view", T0, Some("shoes"), Some(60_000.0)),
        ("like", T0 + MIN, Some("bags"), None),
        ("view", T0 + 2 * MIN, Some("shoes"), Some(15_000.0)),
        ("view", T0 + 7 * MIN, Some("bags"), Some(500_000.0)),
        ("view", T0 + 8 * MIN, None, Some(60_000.0)),
    ];
    let mut lines: Vec<Vec<u8>> = u1.iter().map(|&(a, ts, c, w)| profile_line(&tenant, "s", "u1", a, ts, c, w)).collect();
    lines.push(profile_line(&tenant, "w", "u1", "view", T0, Some("shoes"), Some(60_000.0)));
    // Later events fire every timer.
    for s in ["s", "w"] {
        lines.push(profile_line(&tenant, s, "zz", "noop", T0 + 60 * MIN, None, None));
    }
    stack.produce(&topic, 1, &lines);

    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .job("all")
        .mongo(&stack, &database)
        .redis(&stack)
        .plugins_dir(dir.path())
        .config_poll_ms(100)
        .view_off()
        .start();
    let mut redis = stack.redis();
    let profile_key = |s: &str, u: &str| format!("rt:{tenant}:{s}:profile:{u}");
    let updated_at = |redis: &mut redis::Connection, s: &str, u: &str| -> i64 {
        redis.hget::<_, _, Option<String>>(profile_key(s, u), "updated_at").ok().flatten().and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(120), || updated_at(&mut redis, "s", "u1") >= T0 + 8 * MIN), "{}", host.log());
    let interests = |redis: &mut redis::Connection, s: &str, u: &str| -> (i64, BTreeMap<String, f64>) {
        let p: BTreeMap<String, String> = redis.hgetall(profile_key(s, u)).unwrap();
        let list: Vec<serde_json::Value> = serde_json::from_str(&p["interests"]).unwrap();
        let got = list.iter().map(|i| (i["name"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap())).collect();
        (p["updated_at"].parse().unwrap(), got)
    };
    let assert_close = |got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>| {
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{got:?} vs {want:?}");
        for (k, w) in want {
            assert!((got[k] - w).abs() <= 1e-9 * w, "{k}: {} vs {w}", got[k]);
        }
    };
    let (at, got) = interests(&mut redis, "s", "u1");
    assert_close(&got, &dwell_reference(&u1, &weights, 30_000.0, at));
    let status = |s: &str| -> BTreeMap<String, String> { stack.redis().hgetall(format!("rt:{tenant}:{s}:status")).unwrap() };
    let st = status("s");
    assert_eq!(st["profile_plugin"], "dwell-affinity@0.1.0");
    assert!(st["profile_plugin_state"].starts_with("active"), "{st:?}");

    // The wrong section: refused with both worlds named; the built-in interests (tags too).
    assert!(wait_until(Duration::from_secs(30), || updated_at(&mut redis, "w", "u1") > 0), "{}", host.log());
    let (_, got) = interests(&mut redis, "w", "u1");
    assert!(got.contains_key("tagged") && got.contains_key("shoes"), "built-in interests: {got:?}");
    let st = status("w");
    assert!(st["profile_plugin_state"].starts_with("quarantined"), "{st:?}");
    assert!(
        st["profile_plugin_error"].contains("implements world `scorer`") && st["profile_plugin_error"].contains("user_profile.plugin"),
        "{st:?}"
    );

    // Hot deploy: a new dwell unit, no restart; a new user's interests follow it.
    stack.patch_scenario(
        &database,
        &tenant,
        "s",
        r#"{"config":{"realtime_compute":{"user_profile":{"plugin":{"name":"dwell-affinity","version":"0.1.0","params":{"dwell_unit_ms":10000}}}}}}"#,
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            let st = status("s");
            st.get("config_revision").map(String::as_str) == Some("2")
                && st.get("profile_plugin_state").is_some_and(|s| s.starts_with("active"))
        }),
        "revision 2 not applied\n{}",
        host.log()
    );
    // The new instance is installed right after the status shows the revision; give it a moment.
    std::thread::sleep(Duration::from_secs(2));
    let u2 = [("view", T0 + 61 * MIN, Some("hats"), Some(25_000.0)), ("like", T0 + 62 * MIN, Some("hats"), Some(5_000.0))];
    let mut lines: Vec<Vec<u8>> = u2.iter().map(|&(a, ts, c, w)| profile_line(&tenant, "s", "u2", a, ts, c, w)).collect();
    lines.push(profile_line(&tenant, "s", "zz", "noop", T0 + 2 * 60 * MIN, None, None));
    stack.produce(&topic, 1, &lines);
    assert!(wait_until(Duration::from_secs(60), || updated_at(&mut redis, "s", "u2") >= T0 + 62 * MIN), "{}", host.log());
    let (at, got) = interests(&mut redis, "s", "u2");
    assert_close(&got, &dwell_reference(&u2, &weights, 10_000.0, at));
    assert!(host.stop().success());
}
