//! MongoDB stopped mid-run: the host keeps scoring on its last valid configs, says so, and
//! applies changes again once MongoDB is back (DESIGN §3). It takes the local stack exclusively
//! (`Stack::ensure_exclusive`), because it stops the shared FerretDB.

use std::time::Duration;

use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

#[test]
fn host_runs_on_last_configs_while_mongodb_is_down_and_catches_up_after() {
    let stack = Stack::ensure_exclusive();
    // A test that cannot run fails and says why, rather than passing without running.
    let url = std::env::var("MONGODB_URL").unwrap_or_default();
    assert!(
        url.is_empty() || url.contains(":27018"),
        "cannot run: MONGODB_URL ({url}) points at an external MongoDB this test would have to stop; \
         run it on the local stack (scripts/stack.sh)"
    );
    let (tenant, topic, database) = (unique("out"), unique("events-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    let port = free_port();
    stack.put_scenarios(
        &database,
        &[serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}}}})],
    );
    stack.create_topic(&topic, 1);
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .mongo(&stack, &database)
        .jsonl_out(&sink)
        .view_off()
        .http(port)
        .config_poll_ms(100)
        .config_resync_ms(500)
        .start();
    let events =
        |from: i64, to: i64| -> Vec<Vec<u8>> { (from..to).step_by(10_000).map(|ts| event_line(&tenant, "s", "x", "click", ts)).collect() };
    stack.produce(&topic, 1, &events(T0, T0 + 12 * MIN));
    assert!(wait_until(Duration::from_secs(30), || !read_hot_sink(&sink).0.is_empty()), "{}", host.log());

    stack_cmd(&["stop", "mongo"]);
    let outage_seen =
        wait_until(Duration::from_secs(15), || http_get(port, "/status").is_some_and(|s| s.contains("\"config_store_error\":\"")));
    // Events keep flowing and windows keep closing on the last valid config.
    stack.produce(&topic, 1, &events(T0 + 12 * MIN, T0 + 30 * MIN));
    let kept_scoring = wait_until(Duration::from_secs(30), || read_hot_sink(&sink).0.keys().any(|(_, e)| *e >= T0 + 25 * MIN));
    stack_cmd(&["start", "mongo"]);
    assert!(outage_seen, "the host did not report the outage: {:?}\n{}", http_get(port, "/status"), host.log());
    assert!(kept_scoring, "the host stopped scoring during the outage\n{}", host.log());
    assert!(http_get(port, "/readyz").is_some(), "still ready: it serves on its last configs");

    // Back: a change is picked up again.
    stack.patch_scenario(&database, &tenant, "s", r#"{"config":{"realtime_compute":{"hot_score":{"top_n":5}}}}"#);
    let applied = wait_until(Duration::from_secs(20), || {
        http_get(port, "/status").is_some_and(|s| s.contains("\"config_revision\":2") && s.contains("\"config_store_error\":null"))
    });
    assert!(applied, "revision 2 not applied after MongoDB came back: {:?}\n{}", http_get(port, "/status"), host.log());
    assert!(host.stop().success());
}
