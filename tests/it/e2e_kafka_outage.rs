//! Kafka stopped mid-run (issue 6): the host keeps its state, reports unready while the broker
//! is away, and once it is back catches up; every window equals a run without the outage.
//! It takes the local stack exclusively (`Stack::ensure_exclusive`), because it stops the shared
//! Kafka.

use std::time::Duration;

use rtscore::config::parse_scenario;
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

#[test]
fn kafka_outage_keeps_state_and_readiness_follows_it() {
    let stack = Stack::ensure_exclusive();
    let (tenant, topic) = (unique("ko"), unique("events-"));
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    let doc = serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
        "window_size_minutes": 10, "window_slide_minutes": 5, "decay_lambda": 1.0}}}});
    let scenarios = write_scenarios(dir.path(), std::slice::from_ref(&doc));
    stack.create_topic(&topic, 2);
    let port = free_port();
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .scenarios_dir(&scenarios)
        .redis(&stack)
        .jsonl_out(&sink)
        .view_off()
        .http(port)
        .snapshot_interval_ms(500)
        .partition_idle_ms(600_000)
        .start();
    let events = |from: i64, to: i64| -> Vec<RefEvent> {
        (from..to).step_by(4_000).map(|ts| RefEvent { item_id: format!("i{}", (ts / 4_000) % 9), action: "click".into(), ts }).collect()
    };
    // Both partitions carry the one scenario's events in turn (one host reads both).
    let lines = |evs: &[RefEvent]| -> Vec<Vec<u8>> { evs.iter().map(|e| event_line(&tenant, "s", &e.item_id, &e.action, e.ts)).collect() };
    let (a, b) = (events(T0, T0 + 30 * MIN), events(T0 + 30 * MIN, T0 + 61 * MIN));
    stack.produce(&topic, 2, &lines(&a));
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.len() >= 4), "{}", host.log());
    assert!(wait_until(Duration::from_secs(10), || http_get(port, "/readyz").is_some()), "ready before the outage");

    stack_cmd(&["stop", "kafka"]);
    let unready = wait_until(Duration::from_secs(30), || http_get(port, "/readyz").is_none());
    stack_cmd(&["start", "kafka"]);
    assert!(unready, "/readyz stayed ready while Kafka was down\n{}", host.log());
    assert!(wait_until(Duration::from_secs(60), || http_get(port, "/readyz").is_some()), "ready again after the outage\n{}", host.log());
    stack.produce(&topic, 2, &lines(&b));

    // Every window through the end of b equals the reference: nothing lost, nothing doubled.
    let cfg = parse_scenario(&doc).unwrap();
    let all: Vec<RefEvent> = a.iter().chain(&b).cloned().collect();
    let want: SinkWindows = hot_lists(&all, &cfg.hot_score)
        .into_iter()
        .filter(|(e, _)| *e <= T0 + 60 * MIN)
        .map(|(e, l)| ((format!("{tenant}/s"), e), l))
        .collect();
    assert!(
        wait_until(Duration::from_secs(90), || want.keys().all(|k| read_hot_sink(&sink).0.contains_key(k))),
        "windows missing after the outage\n{}",
        host.log()
    );
    let got: SinkWindows = read_hot_sink(&sink).0.into_iter().filter(|(k, _)| k.1 <= T0 + 60 * MIN).collect();
    let diffs = hot_differences(&want, &got, 1e-9);
    assert!(diffs.is_empty(), "{diffs:?}");
    assert!(host.stop().success());
}
