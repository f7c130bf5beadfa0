//! Issue 18's migration knobs end to end on the real stack: a host told to keep a platform's
//! own Redis key prefix and TTLs writes there (and `rtscore status` finds it), scenario-named
//! CTR/CVR actions reach the metrics hash, and a platform's own event shape read through Kafka
//! (`--event-field`, `--event-ts-unit s`) gives the same windows as the canonical events.

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
        &[
            // The seed's loader ran only `status: "active"`; so does --require-status-active.
            serde_json::json!({"tenant_id": tenant, "scenario_id": "legacy", "revision": 1}),
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "status": "active", "revision": 3, "config": {"realtime_compute": {
            "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 10, "action_weights": {"tap": 2.0, "view": 1.0}},
            "user_profile": {"behavior_weights": {"view": 1.0}},
            "metrics": {"window_size_minutes": 10, "ctr": {"numerator": ["tap"], "denominator": ["expose"]}}}}}),
        ],
    );
    let legacy =
        serde_json::json!({"tenant_id": tenant, "scenario_id": "legacy", "user_id": "u1", "item_id": "i1", "action": "view", "ts": T0});
    let mut lines: Vec<String> = vec![legacy.to_string()];
    lines.extend((0..4).map(|k| line(&tenant, "u1", "i1", "expose", T0 + k * 1000)));
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
        .flag("--require-status-active")
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
    let legacy: std::collections::BTreeMap<String, String> = redis.hgetall(format!("{prefix}:{tenant}:legacy:status")).unwrap();
    assert_eq!(legacy.get("active").map(String::as_str), Some("false"), "{legacy:?}");
    assert!(legacy.get("last_error").is_some_and(|e| e.contains("--require-status-active")), "{legacy:?}");
    assert!(!redis.exists::<_, bool>(format!("{prefix}:{tenant}:legacy:hot")).unwrap(), "a document without status: active is not run");
    let default_layout: Vec<String> = redis.keys(format!("rt:{tenant}:*")).unwrap();
    assert!(default_layout.is_empty(), "nothing under the default prefix: {default_layout:?}");

    // `rtscore status` reads the same layout; without the prefix it finds nothing.
    let url = stack.redis_url.clone();
    let found = cli(&["status", "--redis-url", &url, "--redis-key-prefix", &prefix, "--tenant-id", &tenant, "--json"]);
    let rows: Vec<serde_json::Value> = found.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["scenario"].as_str()).collect();
    assert_eq!(names, [format!("{tenant}/legacy"), format!("{tenant}/s")], "{found}");
    let missed = cli(&["status", "--redis-url", &url, "--tenant-id", &tenant]);
    assert!(missed.contains("no status keys"), "{missed}");
}

/// Kafka events in a platform's own shape give exactly the hot lists their DESIGN §2 twins give
/// in a canonical replay; bad mapped values are dead-lettered with the mapped field's name.
#[test]
fn a_mapped_kafka_topic_scores_like_the_canonical_events() {
    let stack = Stack::ensure();
    let dir = tempfile::tempdir().unwrap();
    let (tenant, topic) = (unique("mf"), unique("events-"));
    let dlq = format!("{topic}-dlq");
    let scenarios = write_scenarios(
        dir.path(),
        &[serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
            "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 5}}}})],
    );
    // (item, action, ts ms): an hour of traffic at 250 ms resolution (fractional seconds),
    // then one event far later that closes every window.
    let actions = ["view", "click", "purchase", "like"];
    let mut evs: Vec<(String, &str, i64)> =
        (0..120i64).map(|i| (format!("i{}", (i * 7) % 9), actions[(i % 4) as usize], T0 + i * 30_000 + (i % 4) * 250)).collect();
    evs.push(("late".into(), "view", T0 + 6 * HOUR));

    let canonical: Vec<String> = evs
        .iter()
        .map(|(item, action, ts)| {
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user_id": "u1", "item_id": item, "action": action, "ts": ts})
                .to_string()
        })
        .collect();
    let events = dir.path().join("canonical.jsonl");
    std::fs::write(&events, canonical.join("\n") + "\n").unwrap();
    let want_sink = dir.path().join("want.jsonl");
    Host::run().events_file(&events).scenarios_dir(&scenarios).jsonl_out(&want_sink).view_off().run_to_end();
    // The replay emits every window at its end; Kafka only those the closing event's
    // watermark passes.
    let (mut want, _) = read_hot_sink(&want_sink);
    want.retain(|(_, end), _| *end < T0 + 6 * HOUR);
    assert!(want.len() >= 12, "the replay emitted its windows: {}", want.len());

    let mut records: Vec<Vec<u8>> = evs
        .iter()
        .map(|(item, action, ts)| {
            let secs = *ts as f64 / 1000.0;
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user": {"id": "u1"}, "content_id": item, "action": action,
                               "meta": {"time": secs}})
            .to_string()
            .into_bytes()
        })
        .collect();
    // Bad values in mapped fields, before the closing event.
    let bad = [
        (
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user": {"id": "u1"}, "content_id": "", "action": "view", "meta": {"time": 1_767_225_601}}),
            "content_id",
        ),
        (
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user": {"id": "u1"}, "content_id": "i1", "action": "view", "meta": {"time": T0}}),
            "meta.time",
        ),
        (
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user_id": "u1", "content_id": "i1", "action": "view", "meta": {"time": 1_767_225_601}}),
            "user.id",
        ),
    ];
    let last = records.pop().unwrap();
    records.extend(bad.iter().map(|(b, _)| b.to_string().into_bytes()));
    records.push(last);
    stack.create_topic(&topic, 1);
    stack.produce(&topic, 1, &records);

    let got_sink = dir.path().join("got.jsonl");
    let host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .dlq_topic(&dlq)
        .scenarios_dir(&scenarios)
        .jsonl_out(&got_sink)
        .view_off()
        .arg("--event-field", "item_id=content_id")
        .arg("--event-field", "user_id=user.id")
        .arg("--event-field", "ts=meta.time")
        .arg("--event-ts-unit", "s")
        .start();
    let same = wait_until(std::time::Duration::from_secs(60), || read_hot_sink(&got_sink).0 == want);
    assert!(same, "mapped windows differ: {:?}\n{}", hot_differences(&want, &read_hot_sink(&got_sink).0, 1e-9), host.log());
    let dead = stack.consume(&dlq, bad.len(), std::time::Duration::from_secs(60));
    assert_eq!(dead.len(), bad.len(), "{}", host.log());
    let reasons: Vec<&String> = dead.iter().map(|(_, h)| h.get("rtscore-reason").expect("reason header")).collect();
    for (_, mapped) in &bad {
        assert!(reasons.iter().any(|r| r.contains(&format!("`{mapped}`"))), "no reason names {mapped:?}: {reasons:?}");
    }
    assert!(reasons.iter().any(|r| r.contains("1767225600000 is outside 2000-01-01..2100-01-01 in epoch seconds")), "{reasons:?}");
}
