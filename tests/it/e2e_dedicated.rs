//! Dedicated instances take load off the fleet (issue 18): a scenario marked `dedicated` is
//! computed only by the instance started for it, and the shared fleet neither computes it nor
//! writes its status key. The host also runs against a collection it may only read.

use std::time::Duration;

use redis::Commands;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

fn doc(tenant: &str, scenario: &str, dedicated: bool) -> serde_json::Value {
    serde_json::json!({"tenant_id": tenant, "scenario_id": scenario, "status": "active", "dedicated": dedicated,
        "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}}}})
}

fn ends(sink: &std::path::Path, scenario: &str) -> usize {
    read_hot_sink(sink).0.keys().filter(|(k, _)| k.ends_with(&format!("/{scenario}"))).count()
}

#[test]
fn a_dedicated_scenario_is_computed_only_by_its_own_instance() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("ded"), unique("events-"), unique("db"));
    stack.put_scenarios(&database, &[doc(&tenant, "shared", false), doc(&tenant, "vip", true)]);
    stack.create_topic(&topic, 2);
    let dir = tempfile::tempdir().unwrap();
    let (fleet_sink, own_sink) = (dir.path().join("fleet.jsonl"), dir.path().join("own.jsonl"));
    let port = free_port();
    let common = Host::run().kafka_topic(&stack, &topic).mongo(&stack, &database).redis(&stack).view_off();
    let mut fleet = common.clone().group_id(&unique("fleet")).jsonl_out(&fleet_sink).http(port).start();
    let mut own = common.only(&tenant, "vip").jsonl_out(&own_sink).start();

    let events: Vec<Vec<u8>> = (T0..T0 + 21 * MIN)
        .step_by(5_000)
        .flat_map(|ts| [event_line(&tenant, "shared", "x", "click", ts), event_line(&tenant, "vip", "y", "click", ts)])
        .collect();
    stack.produce(&topic, 2, &events);
    assert!(wait_until(Duration::from_secs(30), || ends(&fleet_sink, "shared") >= 3), "{}", fleet.log());
    assert!(wait_until(Duration::from_secs(30), || ends(&own_sink, "vip") >= 3), "{}", own.log());
    assert_eq!(ends(&fleet_sink, "vip"), 0, "the fleet computed a dedicated scenario");
    assert_eq!(ends(&own_sink, "shared"), 0, "the dedicated instance computed another scenario");

    // The fleet reports the dedicated scenario's events as filtered, not unknown, and has no
    // status row for it: the status key is the dedicated instance's alone.
    let status: serde_json::Value = serde_json::from_str(&http_get(port, "/status").unwrap()).unwrap();
    let rows = status["scenarios"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["scenario_id"] != "vip"), "{status}");
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    assert!(metrics.lines().any(|l| l.starts_with("rtscore_events_filtered_total") && !l.ends_with(" 0")), "{metrics}");
    let mut redis = stack.redis();
    let key = format!("rt:{tenant}:vip:status");
    assert!(wait_until(Duration::from_secs(10), || redis.hget::<_, _, Option<String>>(&key, "active").ok().flatten().as_deref()
        == Some("true")));
    assert!(fleet.stop().success());
    assert!(own.stop().success());
}

#[test]
fn a_host_without_index_creation_leaves_the_collection_alone_and_runs() {
    let stack = Stack::ensure();
    let (tenant, database) = (unique("ro"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let lines: Vec<String> =
        (T0..T0 + 11 * MIN).step_by(10_000).map(|ts| String::from_utf8(event_line(&tenant, "s", "x", "click", ts)).unwrap()).collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    // The platform's collection, created by another service, without rtscore's indexes.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = rt.block_on(mongodb::Client::with_uri_str(&stack.mongodb_url)).unwrap();
    let scenarios = client.database(&database).collection::<bson::Document>("scenarios");
    rt.block_on(async { scenarios.insert_one(bson::to_document(&doc(&tenant, "s", false)).unwrap()).await }).unwrap();
    let indexes = || rt.block_on(async { scenarios.list_index_names().await }).unwrap();
    let before = indexes();

    let sink = dir.path().join("hot.jsonl");
    let out = Host::run().events_file(&events).mongo(&stack, &database).arg("--mongodb-create-indexes", "false").jsonl_out(&sink).output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ends(&sink, "s") >= 2, "no hot lists from the read-only configuration");
    assert_eq!(indexes(), before, "the host created indexes in a collection it was told to only read");
}
