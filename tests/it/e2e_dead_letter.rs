//! Malformed events go to the dead-letter topic with their original bytes and a reason, and
//! never stop the runtime: good events after them are still scored (DESIGN §2).

use std::time::Duration;

use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;

#[test]
fn malformed_events_reach_the_dead_letter_topic_and_processing_continues() {
    let stack = Stack::ensure();
    let tenant = unique("dl");
    let topic = unique("events-");
    let dlq = format!("{topic}-dlq");
    let database = unique("db");
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    stack.put_scenarios(
        &database,
        &[serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}}}})],
    );
    stack.create_topic(&topic, 1);
    stack.create_topic(&dlq, 1);

    let good = |item: &str, ts: i64| {
        format!(r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"u","item_id":"{item}","action":"click","ts":{ts}}}"#).into_bytes()
    };
    // (bytes, what the reason must mention)
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not valid JSON"),
        (format!(r#"{{"scenario_id":"s","user_id":"u","item_id":"i","action":"click","ts":{T0}}}"#).into_bytes(), "tenant_id"),
        (
            format!(r#"{{"tenant_id":"bad tenant!","scenario_id":"s","user_id":"u","item_id":"i","action":"click","ts":{T0}}}"#)
                .into_bytes(),
            "tenant_id",
        ),
        (
            format!(r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"u","item_id":"","action":"click","ts":{T0}}}"#).into_bytes(),
            "item_id",
        ),
        (
            format!(r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"u","item_id":"i","action":"Click!","ts":{T0}}}"#).into_bytes(),
            "action",
        ),
        (
            format!(r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"u","item_id":"i","action":"click","ts":"yesterday"}}"#)
                .into_bytes(),
            "ts",
        ),
        (
            format!(r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"u","item_id":"i","action":"click","ts":1767225600}}"#)
                .into_bytes(),
            "ts",
        ),
        (
            format!(
                r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":{T0},"watch_time_ms":-5}}"#
            )
            .into_bytes(),
            "watch_time_ms",
        ),
        (vec![0xff, 0xfe, b'{', 0x80], "not valid JSON"),
    ];
    let mut records = vec![good("before", T0)];
    records.extend(bad.iter().map(|(b, _)| b.clone()));
    // After the bad ones: more good events, then one that closes their window.
    records.push(good("after", T0 + 60_000));
    records.push(good("after", T0 + 61_000));
    records.push(good("closer", T0 + 3_600_000));
    stack.produce(&topic, 1, &records);

    let mut host =
        Host::run().kafka(&stack, &topic, &unique("g")).dlq_topic(&dlq).mongo(&stack, &database).jsonl_out(&sink).view_off().start();

    let dead = stack.consume(&dlq, bad.len(), Duration::from_secs(60));
    assert_eq!(dead.len(), bad.len(), "dead letters received\n{}", host.log());
    for ((payload, headers), (original, mention)) in dead.iter().zip(&bad) {
        assert_eq!(payload, original, "the original bytes, unchanged");
        let reason = headers.get("rtscore-reason").expect("reason header");
        assert!(reason.contains(mention), "reason {reason:?} should mention {mention:?}");
        assert!(headers.contains_key("rtscore-reason-kind") && headers.contains_key("rtscore-source-offset"), "{headers:?}");
    }

    // The window holding the good events before and after the bad ones was emitted.
    let key = format!("{tenant}/s");
    let emitted = wait_until(Duration::from_secs(30), || {
        read_hot_sink(&sink)
            .0
            .iter()
            .any(|((k, _), items)| *k == key && items.iter().any(|(i, _)| i == "after") && items.iter().any(|(i, _)| i == "before"))
    });
    assert!(emitted, "good events around the bad ones were not scored\n{}", host.log());
    assert!(host.stop().success());
}

/// A reject the dead-letter topic cannot take (larger than its producer allows) never stalls
/// the host: it goes to the fallback file with the topic's error, the events after it are
/// scored, `/status` stays fresh and SIGTERM ends the host at once.
#[test]
fn a_dead_letter_the_topic_refuses_goes_to_the_fallback_file_and_nothing_waits() {
    let stack = Stack::ensure();
    let (tenant, topic) = (unique("dlf"), unique("events-"));
    let dir = tempfile::tempdir().unwrap();
    let (sink, fallback) = (dir.path().join("out.jsonl"), dir.path().join("fallback.jsonl"));
    let scenarios = write_scenarios(
        dir.path(),
        &[
            serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}}}}),
        ],
    );
    // The events topic takes 3 MB records; the dead-letter producer keeps librdkafka's 1 MB limit.
    stack.create_topic_with(&topic, 1, &[("max.message.bytes", "4194304")]);
    let good = |item: &str, ts: i64| event_line(&tenant, "s", item, "click", ts);
    let huge = format!(
        r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"{}","item_id":"i","action":"click","ts":{T0}}}"#,
        "u".repeat(3_000_000)
    );
    let producer: rdkafka::producer::BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &stack.kafka).set("message.max.bytes", "4194304").create().expect("producer");
    for record in [good("before", T0), huge.into_bytes(), good("after", T0 + 60_000), good("closer", T0 + 3_600_000)] {
        producer.send(rdkafka::producer::BaseRecord::<(), [u8]>::to(&topic).payload(&record).partition(0)).expect("produce");
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flush");

    let port = free_port();
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .dlq_topic(&format!("{topic}-dlq"))
        .arg("--dead-letter-fallback", &fallback)
        .scenarios_dir(&scenarios)
        .jsonl_out(&sink)
        .http(port)
        .view_off()
        .start();
    let scored = wait_until(Duration::from_secs(30), || {
        read_hot_sink(&sink).0.values().any(|items| items.iter().any(|(i, _)| i == "after") && items.iter().any(|(i, _)| i == "before"))
    });
    assert!(scored, "events after the oversized reject were not scored\n{}", host.log());
    // A whole line: a reader can see a 3 MB write while the kernel is still copying it in.
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&fallback)
            .is_ok_and(|f| f.ends_with('\n') && f.lines().count() == 1)),
        "{}",
        host.log()
    );
    let kept: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&fallback).unwrap().trim()).unwrap();
    assert!(kept["raw"].as_str().is_some_and(|r| r.len() > 3_000_000), "the original bytes are kept");
    assert!(kept["dead_letter_topic_error"].as_str().is_some_and(|e| !e.is_empty()), "{kept:?}");
    assert!(kept["reason"].is_string(), "{kept:?}");
    let fresh = http_get(port, "/status")
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|s| s["updated_at_ms"].as_i64());
    assert!(fresh.is_some_and(|t| chrono::Utc::now().timestamp_millis() - t <= 1_000), "status refreshed");
    let asked = std::time::Instant::now();
    assert!(host.stop().success());
    assert!(asked.elapsed() <= Duration::from_secs(2), "SIGTERM took {:?}", asked.elapsed());
}
