//! End to end on the real stack: scenario documents in MongoDB (FerretDB), events through a
//! 3-partition Kafka topic, the runtime binary, results in Redis and the JSONL sink. Every
//! emitted window of three scenarios with different windows, slides, weights and lambdas
//! (including lambda 0 and a fast decay) must equal the per-event reference (DESIGN §4) to 1e-3.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use redis::Commands;
use rtscore::config::parse_scenario;
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const ACTIONS: [&str; 8] = ["impression", "view", "click", "like", "favorite", "comment", "share", "purchase"];

fn scenario_docs(tenant: &str) -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"tenant_id": tenant, "scenario_id": "home", "status": "active", "revision": 1, "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": 60, "window_slide_minutes": 15, "decay_lambda": 0.1, "top_n": 20}}}}),
        serde_json::json!({"tenant_id": tenant, "scenario_id": "search", "status": "active", "revision": 1, "config": {"realtime_compute": {"hot_score": {
            "action_weights": {"click": 3.0, "purchase": 8.0}, "window_size_minutes": 30, "window_slide_minutes": 10, "decay_lambda": 0.0, "top_n": 10}}}}),
        serde_json::json!({"tenant_id": tenant, "scenario_id": "live", "status": "active", "revision": 1, "config": {"realtime_compute": {"hot_score": {
            "action_weights": {"view": 1.0, "like": 2.0, "share": 5.0, "purchase": 0.0}, "window_size_minutes": 20, "window_slide_minutes": 5,
            "decay_lambda": 5.0, "top_n": 15}}}}),
    ]
}

/// A couple of hours of skewed traffic over the three scenarios, in time order with < 5 s of
/// disorder, then one unweighted event per scenario far later, which moves the watermark past
/// every real window.
fn events(tenant: &str) -> Vec<(String, RefEvent)> {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut out = Vec::new();
    for i in 0..4000i64 {
        let scenario = ["home", "search", "live"][rng.random_range(0..3)];
        // Skewed popularity: item k with probability ~ 1/(k+1).
        let item = (rng.random::<f64>().powi(3) * 150.0) as u32;
        let action = ACTIONS[rng.random_range(0..ACTIONS.len())];
        let ts = T0 + i * 1_800 - rng.random_range(0..5_000);
        out.push((scenario.to_string(), RefEvent { item_id: format!("i{item}"), action: action.into(), ts }));
    }
    // `home` gets a weighted click first, so its final Redis list is non-empty and checkable;
    // then every scenario gets an unweighted event much later on each of the 3 partitions,
    // which closes every window before it.
    let end = T0 + 4000 * 1_800;
    out.push(("home".to_string(), RefEvent { item_id: "sentinel".into(), action: "click".into(), ts: end + 3_600_000 }));
    for _partition in 0..3 {
        for s in ["home", "search", "live"] {
            out.push((s.to_string(), RefEvent { item_id: "sentinel".into(), action: "noop".into(), ts: end + 6 * 3_600_000 }));
        }
    }
    let _ = tenant;
    out
}

#[test]
fn kafka_to_redis_matches_the_reference_for_three_scenarios() {
    let stack = Stack::ensure();
    let tenant = unique("t");
    let topic = unique("events-");
    let database = unique("db");
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");

    let docs = scenario_docs(&tenant);
    stack.put_scenarios(&database, &docs);
    stack.create_topic(&topic, 3);
    let evs = events(&tenant);
    let records: Vec<Vec<u8>> = evs
        .iter()
        .map(|(s, e)| {
            format!(
                r#"{{"tenant_id":"{tenant}","scenario_id":"{s}","user_id":"u1","item_id":"{}","action":"{}","ts":{}}}"#,
                e.item_id, e.action, e.ts
            )
            .into_bytes()
        })
        .collect();
    stack.produce(&topic, 3, &records);

    // The reference, per scenario.
    let mut want = SinkWindows::new();
    for d in &docs {
        let cfg = parse_scenario(d).unwrap();
        let sid = cfg.key.scenario_id.to_string();
        let mine: Vec<RefEvent> = evs.iter().filter(|(s, _)| *s == sid).map(|(_, e)| e.clone()).collect();
        for (end, list) in hot_lists(&mine, &cfg.hot_score) {
            want.insert((format!("{tenant}/{sid}"), end), list);
        }
    }
    let expected_nonempty = want.values().filter(|l| !l.is_empty()).count();
    assert!(expected_nonempty > 30, "the workload should produce many windows ({expected_nonempty})");

    let group = unique("g");
    let mut host = Host::run()
        .kafka(&stack, &topic, &group)
        .job("item_hot_score")
        .mongo(&stack, &database)
        .redis(&stack)
        .jsonl_out(&sink)
        .dlq_topic(&format!("{topic}-dlq"))
        .view_off()
        .start();
    let done = wait_until(Duration::from_secs(90), || {
        let (got, _) = read_hot_sink(&sink);
        want.iter().filter(|(_, l)| !l.is_empty()).all(|(k, _)| got.contains_key(k))
    });
    let (got, records) = read_hot_sink(&sink);
    assert!(done, "only {} of {expected_nonempty} windows arrived\n{}", got.len(), host.log());

    let diffs = hot_differences(&want, &got, 1e-3);
    assert!(diffs.is_empty(), "{} differences, first: {:#?}", diffs.len(), &diffs[..diffs.len().min(10)]);

    // Redis holds each scenario's latest window, replaced as a whole, with its meta.
    let mut redis = stack.redis();
    let mut last: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for r in records.iter().filter(|r| r["kind"] == "hot") {
        last.insert(r["scenario_id"].as_str().unwrap().to_string(), r);
    }
    assert_eq!(last.len(), 3);
    let wait_meta = wait_until(Duration::from_secs(10), || {
        last.iter().all(|(s, r)| {
            let end: Option<String> = redis.hget(format!("rt:{tenant}:{s}:hot:meta"), "window_end").unwrap_or(None);
            end == Some(r["window_end"].to_string())
        })
    });
    assert!(wait_meta, "Redis meta does not show the last emitted windows");
    for (s, r) in &last {
        let zset: Vec<(String, f64)> = redis.zrevrange_withscores(format!("rt:{tenant}:{s}:hot"), 0, -1).unwrap();
        let sink_items: Vec<(String, f64)> = r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["item_id"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap()))
            .collect();
        assert_eq!(zset.len(), sink_items.len(), "{s}: Redis ZSET vs last JSONL window");
        let reference = &want[&(format!("{tenant}/{s}"), r["window_end"].as_i64().unwrap())];
        assert_eq!(zset.len(), reference.len(), "{s}: Redis ZSET vs reference");
        // Compared as a map: Redis orders equal scores by member, descending.
        let zmap: BTreeMap<&str, f64> = zset.iter().map(|(i, v)| (i.as_str(), *v)).collect();
        for (ri, rs) in reference {
            let zs = zmap.get(ri.as_str()).unwrap_or_else(|| panic!("{s}: {ri} missing from Redis"));
            assert!((zs - rs).abs() <= 1e-3 * rs.abs(), "{s} {ri}: Redis {zs} vs reference {rs}");
        }
        let meta: BTreeMap<String, String> = redis.hgetall(format!("rt:{tenant}:{s}:hot:meta")).unwrap();
        assert_eq!(meta["config_revision"], "1");
        let ttl: i64 = redis.pttl(format!("rt:{tenant}:{s}:hot:meta")).unwrap();
        assert!(ttl > 0, "keys carry a TTL");
    }
    assert!(!last["home"]["items"].as_array().unwrap().is_empty(), "home's last window holds the sentinel click");
    let status: BTreeMap<String, String> = redis.hgetall(format!("rt:{tenant}:home:status")).unwrap();
    assert_eq!(status.get("config_revision").map(String::as_str), Some("1"), "status key: {status:?}");
    assert!(host.stop().success(), "host exited uncleanly\n{}", host.log());
}
