//! User profiles and recommendation metrics end to end (DESIGN §4, §6): events through Kafka,
//! `--job all`, results in Redis compared with references computed here.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

struct Ev {
    user: &'static str,
    action: &'static str,
    ts: i64,
    category: Option<&'static str>,
    tags: &'static [&'static str],
    watch: Option<f64>,
}

fn line(tenant: &str, e: &Ev) -> Vec<u8> {
    let mut v = serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user_id": e.user, "item_id": format!("i{}", e.ts % 5), "action": e.action, "ts": e.ts});
    if let Some(c) = e.category {
        v["category"] = c.into();
    }
    if !e.tags.is_empty() {
        v["tags"] = serde_json::json!(e.tags);
    }
    if let Some(w) = e.watch {
        v["watch_time_ms"] = w.into();
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn profiles_and_metrics_reach_redis_and_match_the_references() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("pm"), unique("events-"), unique("db"));
    let weights = BTreeMap::from([("view", 1.0), ("like", 3.0), ("purchase", 10.0)]);
    let half_life_days = 1.0;
    stack.put_scenarios(
        &database,
        &[serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 4, "config": {"realtime_compute": {
        "user_profile": {"update_frequency_minutes": 5, "interest_decay_days": half_life_days, "behavior_weights": weights},
        "metrics": {"window_size_minutes": 10, "metrics_to_calculate": ["ctr", "cvr", "watch_time"]}}}})],
    );
    stack.create_topic(&topic, 1);

    let mut evs = vec![
        // u1: interests across three days, so decay over days matters.
        Ev { user: "u1", action: "purchase", ts: T0, category: Some("shoes"), tags: &["red"], watch: None },
        Ev { user: "u1", action: "view", ts: T0 + DAY, category: Some("shoes"), tags: &[], watch: Some(30_000.0) },
        Ev { user: "u1", action: "like", ts: T0 + 2 * DAY, category: Some("bags"), tags: &["red", "sale"], watch: None },
        // u2: no category and no tags: counts and recent items only.
        Ev { user: "u2", action: "view", ts: T0 + 2 * DAY + MIN, category: None, tags: &[], watch: Some(10_000.0) },
        Ev { user: "u2", action: "click", ts: T0 + 2 * DAY + 2 * MIN, category: None, tags: &[], watch: None },
    ];
    // A metrics window with impressions, clicks and a purchase, and one with clicks but no impressions.
    for k in 0..8 {
        evs.push(Ev { user: "u3", action: "impression", ts: T0 + 3 * DAY + k * MIN, category: Some("c"), tags: &[], watch: None });
    }
    evs.push(Ev { user: "u3", action: "click", ts: T0 + 3 * DAY + 2 * MIN, category: Some("c"), tags: &[], watch: None });
    evs.push(Ev { user: "u3", action: "click", ts: T0 + 3 * DAY + 3 * MIN, category: Some("c"), tags: &[], watch: None });
    evs.push(Ev { user: "u3", action: "purchase", ts: T0 + 3 * DAY + 4 * MIN, category: Some("c"), tags: &[], watch: None });
    evs.push(Ev { user: "u3", action: "click", ts: T0 + 3 * DAY + 12 * MIN, category: None, tags: &[], watch: None });
    // Far later: closes every window and fires every profile timer.
    evs.push(Ev { user: "zz", action: "noop", ts: T0 + 4 * DAY, category: None, tags: &[], watch: None });
    stack.produce(&topic, 1, &evs.iter().map(|e| line(&tenant, e)).collect::<Vec<_>>());

    let mut host = Host::run().kafka(&stack, &topic, &unique("g")).job("all").mongo(&stack, &database).redis(&stack).view_off().start();
    let mut redis = stack.redis();
    let metrics_key = |start: i64| format!("rt:{tenant}:s:metrics:{start}");
    let profile_key = |u: &str| format!("rt:{tenant}:s:profile:{u}");
    let ready = wait_until(Duration::from_secs(30), || {
        redis.exists::<_, bool>(metrics_key(T0 + 3 * DAY + 10 * MIN)).unwrap_or(false)
            && redis.exists::<_, bool>(profile_key("u3")).unwrap_or(false)
    });
    assert!(ready, "metrics and profiles did not reach Redis\n{}", host.log());

    // Metrics: window [3d, 3d+10m): 8 impressions, 2 clicks, 1 purchase.
    let m: BTreeMap<String, String> = redis.hgetall(metrics_key(T0 + 3 * DAY)).unwrap();
    assert_eq!(m["count:impression"], "8");
    assert_eq!(m["count:click"], "2");
    assert_eq!(m["ctr"].parse::<f64>().unwrap(), 0.25);
    assert_eq!(m["cvr"].parse::<f64>().unwrap(), 0.5);
    assert_eq!(m["config_revision"], "4");
    // The next window has a click and no impressions: ctr is null, never NaN.
    let m2: BTreeMap<String, String> = redis.hgetall(metrics_key(T0 + 3 * DAY + 10 * MIN)).unwrap();
    assert_eq!(m2["ctr"], "null");
    assert_eq!(m2["cvr"], "0");
    // Watch time of the window holding u1's view.
    let mw: BTreeMap<String, String> = redis.hgetall(metrics_key(T0 + DAY)).unwrap();
    assert_eq!(mw["watch_time_total_ms"].parse::<f64>().unwrap(), 30_000.0);
    assert_eq!(mw["watch_time_mean_ms"].parse::<f64>().unwrap(), 30_000.0);
    assert!(redis.pttl::<_, i64>(metrics_key(T0 + 3 * DAY)).unwrap() > 0, "metrics keys carry a TTL");

    // Profiles: u1's interests decayed to the profile's write time.
    assert!(wait_until(Duration::from_secs(10), || redis.hget::<_, _, Option<String>>(profile_key("u1"), "updated_at").unwrap().is_some()));
    let p: BTreeMap<String, String> = redis.hgetall(profile_key("u1")).unwrap();
    let at: i64 = p["updated_at"].parse().unwrap();
    let decay = |ts: i64| 0.5f64.powf((at - ts) as f64 / (half_life_days * DAY as f64));
    let mut want: BTreeMap<&str, f64> = BTreeMap::new();
    for e in evs.iter().filter(|e| e.user == "u1") {
        if let Some(w) = weights.get(e.action) {
            for name in e.category.iter().chain(e.tags.iter()) {
                *want.entry(name).or_default() += w * decay(e.ts);
            }
        }
    }
    let interests: Vec<serde_json::Value> = serde_json::from_str(&p["interests"]).unwrap();
    assert_eq!(interests.len(), want.len(), "{interests:?}");
    for i in &interests {
        let (name, score) = (i["name"].as_str().unwrap(), i["score"].as_f64().unwrap());
        assert!((score - want[name]).abs() <= 1e-9 * want[name], "{name}: {score} vs {}", want[name]);
    }
    let counts: BTreeMap<String, u64> = serde_json::from_str(&p["counts"]).unwrap();
    assert_eq!(counts, BTreeMap::from([("purchase".into(), 1), ("view".into(), 1), ("like".into(), 1)]));
    assert!(redis.pttl::<_, i64>(profile_key("u1")).unwrap() > 0, "profile keys carry a TTL");

    // u2 has no category or tags: no interests, but counts and recent items.
    let p2: BTreeMap<String, String> = redis.hgetall(profile_key("u2")).unwrap();
    assert_eq!(p2["interests"], "[]");
    let recent: Vec<serde_json::Value> = serde_json::from_str(&p2["recent_items"]).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0]["action"], "click", "most recent first");
    assert!(host.stop().success());
}

#[test]
fn a_metrics_list_change_mid_run_applies_to_later_windows() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("ml"), unique("events-"), unique("db"));
    stack.put_scenarios(
        &database,
        &[serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
        "metrics": {"window_size_minutes": 10, "metrics_to_calculate": ["ctr", "cvr", "watch_time"]}}}})],
    );
    stack.create_topic(&topic, 1);
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .job("metrics")
        .mongo(&stack, &database)
        .redis(&stack)
        .view_off()
        .config_poll_ms(100)
        .start();
    let traffic = |from: i64, to: i64| -> Vec<Vec<u8>> {
        (from..to)
            .step_by(30_000)
            .flat_map(|ts| [event_line(&tenant, "s", "i", "impression", ts), event_line(&tenant, "s", "i", "click", ts + 1)])
            .collect()
    };
    let mut redis = stack.redis();
    let key = |start: i64| format!("rt:{tenant}:s:metrics:{start}");
    stack.produce(&topic, 1, &traffic(T0, T0 + 25 * MIN));
    assert!(wait_until(Duration::from_secs(30), || redis.exists::<_, bool>(key(T0 + 10 * MIN)).unwrap_or(false)), "{}", host.log());
    let before: BTreeMap<String, String> = redis.hgetall(key(T0)).unwrap();
    assert!(before.contains_key("ctr") && before.contains_key("watch_time_total_ms"), "{before:?}");

    stack.patch_scenario(&database, &tenant, "s", r#"{"config":{"realtime_compute":{"metrics":{"metrics_to_calculate":["cvr"]}}}}"#);
    assert!(
        wait_until(Duration::from_secs(10), || redis
            .hget::<_, _, Option<String>>(format!("rt:{tenant}:s:status"), "config_revision")
            .unwrap()
            .as_deref()
            == Some("2")),
        "revision 2 not applied\n{}",
        host.log()
    );
    stack.produce(&topic, 1, &traffic(T0 + 25 * MIN, T0 + 50 * MIN));
    assert!(wait_until(Duration::from_secs(30), || redis.exists::<_, bool>(key(T0 + 30 * MIN)).unwrap_or(false)), "{}", host.log());
    let after: BTreeMap<String, String> = redis.hgetall(key(T0 + 30 * MIN)).unwrap();
    assert_eq!(after["config_revision"], "2");
    assert!(after.contains_key("cvr") && !after.contains_key("ctr") && !after.contains_key("watch_time_total_ms"), "{after:?}");
    assert_eq!(after["count:impression"], "20", "counts are always computed");
    assert!(host.stop().success());
}

#[test]
fn per_item_metrics_reach_redis_and_jsonl_for_the_top_items() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("pi"), unique("events-"), unique("db"));
    stack.put_scenarios(
        &database,
        &[serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
        "metrics": {"window_size_minutes": 10, "metrics_to_calculate": ["ctr", "cvr"], "per_item": {"top_n": 2}}}}})],
    );
    stack.create_topic(&topic, 1);
    let ev = |item: &str, action: &str, ts: i64| event_line(&tenant, "s", item, action, ts);
    // Window [T0, T0+10m): a 6 events (4 impressions, 2 clicks), b 3 (2 impressions, 1 click),
    // c 1 (cut by top_n 2).
    let mut lines: Vec<Vec<u8>> = (0..4).map(|k| ev("a", "impression", T0 + k * MIN)).collect();
    lines.extend([ev("a", "click", T0 + 5 * MIN), ev("a", "click", T0 + 6 * MIN)]);
    lines.extend([ev("b", "impression", T0), ev("b", "impression", T0 + MIN), ev("b", "click", T0 + 9 * MIN)]);
    lines.push(ev("c", "impression", T0 + 2 * MIN));
    // Closes the window.
    lines.push(ev("z", "noop", T0 + 30 * MIN));
    stack.produce(&topic, 1, &lines);

    let jsonl = std::env::temp_dir().join(format!("{}.jsonl", unique("per-item")));
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .job("metrics")
        .mongo(&stack, &database)
        .redis(&stack)
        .jsonl_out(&jsonl)
        .view_off()
        .start();
    let mut redis = stack.redis();
    let key = format!("rt:{tenant}:s:metrics:{T0}");
    let items_key = format!("{key}:items");
    assert!(wait_until(Duration::from_secs(30), || redis.exists::<_, bool>(&items_key).unwrap_or(false)), "{}", host.log());
    let m: BTreeMap<String, String> = redis.hgetall(&key).unwrap();
    assert_eq!((m["item_count"].as_str(), m["items_untracked_events"].as_str()), ("2", "0"));
    let items: BTreeMap<String, String> = redis.hgetall(&items_key).unwrap();
    assert_eq!(items.keys().collect::<Vec<_>>(), ["a", "b"], "top 2 by events");
    let a: serde_json::Value = serde_json::from_str(&items["a"]).unwrap();
    assert_eq!(a["events"], 6);
    assert_eq!(a["counts"], serde_json::json!({"impression": 4, "click": 2}));
    assert_eq!(a["ctr"].as_f64(), Some(0.5));
    assert_eq!(a["cvr"].as_f64(), Some(0.0));
    let b: serde_json::Value = serde_json::from_str(&items["b"]).unwrap();
    assert_eq!(b["ctr"].as_f64(), Some(0.5));
    assert!(redis.pttl::<_, i64>(&items_key).unwrap() > 0, "the items hash carries the metrics TTL");
    assert!(host.stop().success());

    let text = std::fs::read_to_string(&jsonl).unwrap();
    let record: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "metrics" && v["window_start"] == T0)
        .expect("the window's metrics record");
    let ids: Vec<&str> = record["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"], "most events first");
    assert_eq!(record["items_untracked_events"], 0);
    let _ = std::fs::remove_file(&jsonl);
}
