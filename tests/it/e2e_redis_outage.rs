//! Redis stopped mid-run (DESIGN §6, issue 6): the host reports unready, holds events instead
//! of dropping results, and once Redis is back every window equals a run without the outage.
//! It takes the local stack exclusively (`Stack::ensure_exclusive`), because it stops the shared
//! Redis.

use std::time::Duration;

use redis::Commands;
use rtscore::config::parse_scenario;
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

#[test]
fn redis_outage_loses_no_window_and_readiness_follows_it() {
    let stack = Stack::ensure_exclusive();
    let (tenant, topic) = (unique("ro"), unique("events-"));
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    let doc = serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
        "window_size_minutes": 10, "window_slide_minutes": 5, "decay_lambda": 1.0}}}});
    let scenarios = write_scenarios(dir.path(), std::slice::from_ref(&doc));
    stack.create_topic(&topic, 1);
    let port = free_port();
    let group = unique("g");
    let mut host =
        Host::run().kafka(&stack, &topic, &group).scenarios_dir(&scenarios).redis(&stack).jsonl_out(&sink).view_off().http(port).start();
    let events = |from: i64, to: i64| -> Vec<RefEvent> {
        (from..to).step_by(4_000).map(|ts| RefEvent { item_id: format!("i{}", (ts / 4_000) % 9), action: "click".into(), ts }).collect()
    };
    let lines = |evs: &[RefEvent]| -> Vec<Vec<u8>> { evs.iter().map(|e| event_line(&tenant, "s", &e.item_id, &e.action, e.ts)).collect() };
    let (a, b, c) = (events(T0, T0 + 30 * MIN), events(T0 + 30 * MIN, T0 + 60 * MIN), events(T0 + 60 * MIN, T0 + 61 * MIN));
    stack.produce(&topic, 1, &lines(&a));
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.len() >= 4), "{}", host.log());
    assert!(wait_until(Duration::from_secs(10), || http_get(port, "/readyz").is_some()), "ready before the outage");

    stack_cmd(&["stop", "redis"]);
    stack.produce(&topic, 1, &lines(&b));
    let unready = wait_until(Duration::from_secs(20), || http_get(port, "/readyz").is_none());
    let emitted_during = read_hot_sink(&sink).0.len();
    stack_cmd(&["start", "redis"]);
    assert!(unready, "/readyz stayed ready while Redis was down\n{}", host.log());
    stack.produce(&topic, 1, &lines(&c));

    // Every window through the end of b, exactly once, equal to the reference.
    let cfg = parse_scenario(&doc).unwrap();
    let all: Vec<RefEvent> = a.iter().chain(&b).chain(&c).cloned().collect();
    let want: SinkWindows = hot_lists(&all, &cfg.hot_score)
        .into_iter()
        .filter(|(e, _)| *e <= T0 + 60 * MIN)
        .map(|(e, l)| ((format!("{tenant}/s"), e), l))
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || want.keys().all(|k| read_hot_sink(&sink).0.contains_key(k))),
        "windows missing after the outage\n{}",
        host.log()
    );
    let (got, records) = read_hot_sink(&sink);
    let got: SinkWindows = got.into_iter().filter(|(k, _)| k.1 <= T0 + 60 * MIN).collect();
    let diffs = hot_differences(&want, &got, 1e-3);
    assert!(diffs.is_empty(), "{diffs:?}");
    let ends: Vec<i64> = records.iter().filter(|r| r["kind"] == "hot").map(|r| r["window_end"].as_i64().unwrap()).collect();
    let mut unique_ends = ends.clone();
    unique_ends.dedup();
    assert_eq!(ends, unique_ends, "no window emitted twice");
    assert!(emitted_during < want.len(), "the outage held windows back (emitted {emitted_during} of {} during it)", want.len());

    // Redis holds the latest window again, and the host is ready.
    let mut redis = stack.redis();
    let last = records.iter().rev().find(|r| r["kind"] == "hot").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || redis
            .hget::<_, _, Option<String>>(format!("rt:{tenant}:s:hot:meta"), "window_end")
            .unwrap_or(None)
            == Some(last["window_end"].to_string())),
        "Redis does not hold the last window"
    );
    assert!(wait_until(Duration::from_secs(10), || http_get(port, "/readyz").is_some()), "ready again after the outage");
    // Redis came back empty (the local stack keeps no data on disk): the host stores its
    // partition state again, so a crash now would still resume without loss.
    let snapshot = format!("rtscore:snapshot:{group}:{topic}:0");
    assert!(
        wait_until(Duration::from_secs(15), || redis.exists::<_, bool>(&snapshot).unwrap_or(false)),
        "no snapshot stored after the outage\n{}",
        host.log()
    );
    assert!(host.stop().success());
}
