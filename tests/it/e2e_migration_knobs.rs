//! Issue 18's migration knobs end to end on the real stack: a host told to keep a platform's
//! own Redis key prefix and TTLs writes there (and `rtscore status` finds it), and scenario-named
//! CTR/CVR actions reach the metrics hash.

use redis::Commands;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;

fn line(tenant: &str, user: &str, item: &str, action: &str, ts: i64) -> String {
    serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user_id": user, "item_id": item, "action": action, "ts": ts,
                       "category": "shoes"})
    .to_string()
}

/// The PTTL of `key`, which must lie within a minute below `want_ms` (the host just wrote it).
fn assert_ttl(redis: &mut redis::Connection, key: &str, want_ms: i64) {
    let pttl: i64 = redis::cmd("PTTL").arg(key).query(redis).unwrap();
    assert!((want_ms - 60_000..=want_ms).contains(&pttl), "{key}: PTTL {pttl}, want about {want_ms}");
}

#[test]
fn a_custom_key_prefix_and_ttls_hold_for_every_key_kind() {
    let stack = Stack::ensure();
    let dir = tempfile::tempdir().unwrap();
    let (tenant, prefix) = (unique("mk"), format!("reco.{}", unique("p")));
    let scenarios = write_scenarios(
        dir.path(),
        &[serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 3, "config": {"realtime_compute": {
            "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 10, "action_weights": {"tap": 2.0, "view": 1.0}},
            "user_profile": {"behavior_weights": {"view": 1.0}},
            "metrics": {"window_size_minutes": 10, "ctr": {"numerator": ["tap"], "denominator": ["expose"]}}}}})],
    );
    let mut lines: Vec<String> = (0..4).map(|k| line(&tenant, "u1", "i1", "expose", T0 + k * 1000)).collect();
    lines.extend([line(&tenant, "u1", "i1", "tap", T0 + 5_000), line(&tenant, "u1", "i2", "view", T0 + 6_000)]);
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();

    Host::run()
        .events_file(&events)
        .scenarios_dir(&scenarios)
        .redis(&stack)
        .job("all")
        .view_off()
        .arg("--redis-key-prefix", &prefix)
        .arg("--redis-ttl", "hot=2h")
        .arg("--redis-ttl", "status=3h")
        .arg("--redis-ttl", "metrics=4h")
        .arg("--redis-ttl", "profile=5h")
        .run_to_end();

    let mut redis = stack.redis();
    let base = format!("{prefix}:{tenant}:s");
    let hot: Vec<(String, f64)> = redis.zrange_withscores(format!("{base}:hot"), 0, -1).unwrap();
    assert_eq!(hot.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(), ["i2", "i1"], "{hot:?}");
    assert_ttl(&mut redis, &format!("{base}:hot"), 2 * HOUR);
    assert_ttl(&mut redis, &format!("{base}:hot:meta"), 2 * HOUR);
    assert_ttl(&mut redis, &format!("{base}:metrics:{T0}"), 4 * HOUR);
    assert_ttl(&mut redis, &format!("{base}:profile:u1"), 5 * HOUR);
    let ctr: String = redis.hget(format!("{base}:metrics:{T0}"), "ctr").unwrap();
    assert_eq!(ctr, "0.25", "ctr = tap / expose, as the scenario names them");
    let status: std::collections::BTreeMap<String, String> = redis.hgetall(format!("{base}:status")).unwrap();
    assert_eq!(status.get("config_revision").map(String::as_str), Some("3"), "{status:?}");
    assert_ttl(&mut redis, &format!("{base}:status"), 3 * HOUR);
    let default_layout: Vec<String> = redis.keys(format!("rt:{tenant}:*")).unwrap();
    assert!(default_layout.is_empty(), "nothing under the default prefix: {default_layout:?}");

    // `rtscore status` reads the same layout; without the prefix it finds nothing.
    let url = stack.redis_url.clone();
    let found = cli(&["status", "--redis-url", &url, "--redis-key-prefix", &prefix, "--tenant-id", &tenant, "--json"]);
    let row: serde_json::Value = serde_json::from_str(found.lines().next().unwrap()).unwrap();
    assert_eq!(row["scenario"], format!("{tenant}/s"));
    let missed = cli(&["status", "--redis-url", &url, "--tenant-id", &tenant]);
    assert!(missed.contains("no status keys"), "{missed}");
}
