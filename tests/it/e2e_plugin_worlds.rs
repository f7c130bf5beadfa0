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
