//! Last valid means last valid (issue 18): a scenario file that stops being JSON, or a stored
//! document whose ids can no longer be read, keeps its scenario running on the last valid
//! config with its state; only a delete removes it, and the removal shows in status.

use std::path::Path;
use std::time::Duration;

use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

fn doc(tenant: &str, scenario: &str) -> serde_json::Value {
    serde_json::json!({"tenant_id": tenant, "scenario_id": scenario, "status": "active", "revision": 1,
        "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}}}})
}

/// The same clicks for scenarios a and b, one every 5 s from `from` to `to`: their hot lists
/// must be equal window by window, unless one of them lost its state.
fn twin_clicks(tenant: &str, from: i64, to: i64) -> Vec<Vec<u8>> {
    (from..to)
        .step_by(5_000)
        .enumerate()
        .flat_map(|(n, ts)| {
            let item = format!("i{}", n % 7);
            [event_line(tenant, "a", &item, "click", ts), event_line(tenant, "b", &item, "click", ts)]
        })
        .collect()
}

fn status_row(port: u16, scenario: &str) -> Option<serde_json::Value> {
    let status: serde_json::Value = serde_json::from_str(&http_get(port, "/status")?).ok()?;
    status["scenarios"].as_array()?.iter().find(|r| r["scenario_id"] == scenario).cloned()
}

/// Window ends emitted for `scenario`.
fn ends(sink: &Path, scenario: &str) -> Vec<i64> {
    read_hot_sink(sink).0.keys().filter(|(k, _)| k.ends_with(&format!("/{scenario}"))).map(|(_, e)| *e).collect()
}

/// Every window of b equals a's window with the same end.
fn assert_twins(sink: &Path, tenant: &str) {
    let (windows, _) = read_hot_sink(sink);
    let mut compared = 0;
    for ((key, end), list) in &windows {
        if key == &format!("{tenant}/b") {
            assert_eq!(Some(list), windows.get(&(format!("{tenant}/a"), *end)), "b's window {end} differs from a's: b lost its state");
            compared += 1;
        }
    }
    assert!(compared >= 3, "only {compared} windows of b compared");
}

/// Runs one host over a Kafka topic with scenarios a and b stored by `store`, breaks b's
/// document with `break_b`, checks b keeps running with its state, then deletes it with
/// `delete_b` and checks the removal shows.
fn keeps_the_last_valid_until_deleted(configure: impl FnOnce(Host) -> Host, tenant: &str, break_b: impl FnOnce(), delete_b: impl FnOnce()) {
    let stack = Stack::ensure();
    let topic = unique("events-");
    stack.create_topic(&topic, 1);
    let out = tempfile::tempdir().unwrap();
    let sink = out.path().join("hot.jsonl");
    let port = free_port();
    let host = Host::run().kafka_topic(&stack, &topic).group_id(&unique("g")).jsonl_out(&sink).view_off().http(port);
    let mut host = configure(host).start();

    stack.produce(&topic, 1, &twin_clicks(tenant, T0, T0 + 11 * MIN));
    assert!(wait_until(Duration::from_secs(30), || ends(&sink, "b").len() >= 2), "{}", host.log());

    break_b();
    let kept = wait_until(Duration::from_secs(15), || {
        status_row(port, "b").is_some_and(|r| r["active"] == true && r["config_revision"] == 1 && r["last_error"].is_string())
    });
    assert!(kept, "b is not kept on its last valid config with the reason shown: {:?}\n{}", status_row(port, "b"), host.log());
    stack.produce(&topic, 1, &twin_clicks(tenant, T0 + 11 * MIN, T0 + 22 * MIN));
    assert!(
        wait_until(Duration::from_secs(30), || ends(&sink, "b").iter().any(|e| *e >= T0 + 20 * MIN)),
        "b stopped emitting while its document was unreadable\n{}",
        host.log()
    );
    assert_twins(&sink, tenant);

    delete_b();
    let removed = wait_until(Duration::from_secs(15), || {
        status_row(port, "b").is_some_and(|r| r["active"] == false && r["removed_reason"].as_str().is_some_and(|w| w.contains("gone")))
    });
    assert!(removed, "the delete does not show in status: {:?}", status_row(port, "b"));
    assert!(host.log().contains("scenario removed"), "the removal is not logged");
    let before = ends(&sink, "b").len();
    stack.produce(&topic, 1, &twin_clicks(tenant, T0 + 22 * MIN, T0 + 33 * MIN));
    assert!(wait_until(Duration::from_secs(30), || ends(&sink, "a").iter().any(|e| *e >= T0 + 30 * MIN)), "{}", host.log());
    assert_eq!(ends(&sink, "b").len(), before, "no windows for a deleted scenario");
    assert!(host.stop().success());
}

#[test]
fn a_scenario_file_that_stops_being_json_keeps_its_scenario_and_state() {
    let tenant = unique("lv");
    let dir = tempfile::tempdir().unwrap();
    let b_file = dir.path().join("b.json");
    std::fs::write(dir.path().join("a.json"), doc(&tenant, "a").to_string()).unwrap();
    std::fs::write(&b_file, doc(&tenant, "b").to_string()).unwrap();
    keeps_the_last_valid_until_deleted(
        |h| h.scenarios_dir(dir.path()),
        &tenant,
        // An editor's half-written save.
        || std::fs::write(&b_file, "{\"tenant_id\": \"half-writ").unwrap(),
        || std::fs::remove_file(&b_file).unwrap(),
    );
}

#[test]
fn a_stored_document_whose_ids_cannot_be_read_keeps_its_scenario_and_state() {
    let stack = Stack::ensure();
    let (tenant, database) = (unique("lv"), unique("db"));
    stack.put_scenarios(&database, &[doc(&tenant, "a"), doc(&tenant, "b")]);
    let mangle = || {
        mongo_update(&stack, &database, &tenant, serde_json::json!({"$set": {"tenant_id": 7}}));
    };
    let delete = || {
        mongo_delete(&stack, &database, 7);
    };
    keeps_the_last_valid_until_deleted(|h| h.mongo(&stack, &database).config_resync_ms(300), &tenant, mangle, delete);
}

fn mongo_collection(stack: &Stack, database: &str) -> (tokio::runtime::Runtime, mongodb::Collection<bson::Document>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = rt.block_on(mongodb::Client::with_uri_str(&stack.mongodb_url)).unwrap();
    (rt, client.database(database).collection("scenarios"))
}

/// Updates scenario b of `tenant` straight in MongoDB, as another service sharing the
/// collection would.
fn mongo_update(stack: &Stack, database: &str, tenant: &str, update: serde_json::Value) {
    let (rt, scenarios) = mongo_collection(stack, database);
    let update = bson::to_document(&update).unwrap();
    let result = rt.block_on(async { scenarios.update_one(bson::doc! {"tenant_id": tenant, "scenario_id": "b"}, update).await }).unwrap();
    assert_eq!(result.modified_count, 1);
}

fn mongo_delete(stack: &Stack, database: &str, tenant_id: i32) {
    let (rt, scenarios) = mongo_collection(stack, database);
    let result = rt.block_on(async { scenarios.delete_one(bson::doc! {"tenant_id": tenant_id, "scenario_id": "b"}).await }).unwrap();
    assert_eq!(result.deleted_count, 1);
}
