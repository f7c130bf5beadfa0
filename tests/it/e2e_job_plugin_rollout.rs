//! Shadow and rollout for metrics and profile plugins (docs/rollout.md, "Metrics and profile
//! plugins"), end to end: events through Kafka, modules from a watched plugins directory, a
//! candidate's metrics written beside the live ones and its profile agreement in status, then a
//! revision whose metrics plugin switches exactly at its effective window end.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

#[test]
fn metrics_and_profile_candidates_run_in_shadow_and_a_revision_switches_at_its_window_end() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("jr"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    for m in ["completion-rate", "dwell-affinity"] {
        std::fs::write(dir.path().join(format!("{m}@0.1.0.wasm")), plugins::module(m)).unwrap();
    }
    let rate_of = |start: &str| serde_json::json!({"name": "completion-rate", "version": "0.1.0", "params": {"start": start, "complete": "complete"}});
    let dwell = |unit: f64| serde_json::json!({"name": "dwell-affinity", "version": "0.1.0", "params": {"dwell_unit_ms": unit}});
    let doc = serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1,
        "config": {"realtime_compute": {
            "metrics": {"window_size_minutes": 10, "metrics_to_calculate": ["ctr"], "plugin": rate_of("play")},
            "user_profile": {"update_frequency_minutes": 5, "behavior_weights": {"view": 1.0, "play": 2.0}, "plugin": dwell(30_000.0)}}},
        "candidate": {"metrics": {"plugin": rate_of("view")}, "user_profile": {"plugin": dwell(1_000.0)}}});
    stack.put_scenarios(&database, &[doc]);
    stack.create_topic(&topic, 1);
    let ev = |user: &str, item: &str, action: &str, ts: i64| {
        let v = serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user_id": user, "item_id": item, "action": action,
            "ts": ts, "category": format!("c-{item}"), "watch_time_ms": 20_000});
        serde_json::to_vec(&v).unwrap()
    };
    // A window's events: 4 views, 2 plays, 1 complete of item a; the next window's first event
    // closes it (lateness 10 s).
    let window = |start: i64| -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = (0..4).map(|k| ev(&format!("u{k}"), "a", "view", start + k * MIN)).collect();
        v.extend([
            ev("u0", "a", "play", start + 4 * MIN),
            ev("u1", "a", "play", start + 5 * MIN),
            ev("u0", "a", "complete", start + 6 * MIN),
        ]);
        v
    };
    let mut lines = window(T0);
    lines.push(ev("zz", "z", "noop", T0 + 20 * MIN));
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
    let key = |start: i64| format!("rt:{tenant}:s:metrics:{start}");
    assert!(wait_until(Duration::from_secs(120), || redis.exists::<_, bool>(key(T0)).unwrap_or(false)), "{}", host.log());
    let m: BTreeMap<String, String> = redis.hgetall(key(T0)).unwrap();
    let value = |m: &BTreeMap<String, String>, f: &str| m.get(f).map(|v| v.parse::<f64>().unwrap());
    assert_eq!(m["plugin"], "completion-rate@0.1.0");
    assert_eq!(value(&m, "plugin:completion_rate"), Some(0.5), "live: completes per play {m:?}");
    assert_eq!(m["shadow"], "completion-rate@0.1.0", "{m:?}");
    assert_eq!(value(&m, "shadow:completion_rate"), Some(0.25), "candidate: completes per view {m:?}");
    let shadow_items: BTreeMap<String, String> = redis.hgetall(format!("{}:shadow_items", key(T0))).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&shadow_items["a"]).unwrap()["completion_rate"], 0.25);

    let status = || -> BTreeMap<String, String> { stack.redis().hgetall(format!("rt:{tenant}:s:status")).unwrap() };
    assert!(
        wait_until(Duration::from_secs(30), || status().get("profile_shadow_users").is_some_and(|u| u.parse::<u64>().unwrap_or(0) >= 4)),
        "{:?}\n{}",
        status(),
        host.log()
    );
    let st = status();
    assert_eq!(st["metrics_candidate"], "completion-rate@0.1.0");
    assert!(st["metrics_candidate_state"].starts_with("active") && st["profile_candidate_state"].starts_with("active"), "{st:?}");
    // Each user's events are of one category: both plugins rank the same interests.
    assert_eq!(st["profile_shadow_overlap_at_k"], "1", "{st:?}");
    // The live profile is the live plugin's: dwell 20 s over a 30 s unit.
    let p: BTreeMap<String, String> = redis.hgetall(format!("rt:{tenant}:s:profile:u2")).unwrap();
    let interests: serde_json::Value = serde_json::from_str(&p["interests"]).unwrap();
    let score = interests[0]["score"].as_f64().unwrap();
    assert!(score > 0.6 && score <= 20.0 / 30.0, "{interests}");

    // Revision 2: the metrics plugin counts per view, from the window ending at T0+50m on.
    let effective = T0 + 50 * MIN;
    let body = serde_json::json!({"config": {"realtime_compute": {"metrics": {"plugin": rate_of("view")}}}, "candidate": null});
    stack.scenario_cli("patch", &database, &tenant, "s", &["--effective-from", &effective.to_string(), "--body", &body.to_string()]);
    assert!(
        wait_until(Duration::from_secs(30), || status()
            .get("metrics_plugin_pending")
            .is_some_and(|p| p.starts_with(&format!("completion-rate@0.1.0 from {effective}: active")))),
        "{:?}\n{}",
        status(),
        host.log()
    );
    let mut lines = window(T0 + 30 * MIN);
    lines.extend(window(T0 + 40 * MIN));
    lines.push(ev("zz", "z", "noop", T0 + 60 * MIN));
    stack.produce(&topic, 1, &lines);
    assert!(wait_until(Duration::from_secs(60), || redis.exists::<_, bool>(key(T0 + 40 * MIN)).unwrap_or(false)), "{}", host.log());
    let before: BTreeMap<String, String> = redis.hgetall(key(T0 + 30 * MIN)).unwrap();
    let after: BTreeMap<String, String> = redis.hgetall(key(T0 + 40 * MIN)).unwrap();
    assert_eq!(value(&before, "plugin:completion_rate"), Some(0.5), "before its window end the previous plugin: {before:?}");
    assert_eq!(value(&after, "plugin:completion_rate"), Some(0.25), "from its window end the revision's: {after:?}");
    assert!(!after.contains_key("shadow"), "the candidate was removed: {after:?}");
    let cleared = |st: &BTreeMap<String, String>| {
        ["metrics_plugin_pending", "metrics_candidate"].iter().all(|f| st.get(*f).is_some_and(String::is_empty))
    };
    assert!(wait_until(Duration::from_secs(10), || cleared(&status())), "{:?}", status());
    assert!(host.stop().success());
}
