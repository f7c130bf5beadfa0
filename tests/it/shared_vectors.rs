//! The shared hot-score vectors (tests/vectors/hot, copied from the product's independent
//! expected outputs) replayed through the real binary: every window's hot list must match to a
//! relative 1e-3 (DESIGN §4, §7).

use std::path::Path;

use rtscore_testkit::hot_vectors as vectors;
use rtscore_testkit::{Host, SinkWindows, hot_differences, read_hot_sink};

fn load(path: &Path) -> SinkWindows {
    assert!(path.exists(), "{} missing", path.display());
    read_hot_sink(path).0
}

#[test]
fn replay_of_shared_vectors_matches_expected_hot_lists() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    let status = Host::run()
        .job("item_hot_score")
        .view_off()
        .events_file(vectors().join("events.jsonl"))
        .scenarios_dir(vectors().join("scenarios"))
        .jsonl_out(&sink)
        .status();
    assert!(status.success(), "rtscore exited with {status}");
    let want = load(&vectors().join("expected.jsonl"));
    let got = load(&sink);
    assert_eq!(want.len(), 45, "the vectors hold 45 windows");
    let diffs = hot_differences(&want, &got, 1e-3);
    assert!(diffs.is_empty(), "{} differences, first: {:#?}", diffs.len(), &diffs[..diffs.len().min(10)]);
}

/// Three events dated 2099 (two of the vectors' tenants, one of a tenant no scenario has)
/// change nothing: each is dead-lettered as `ts_in_future` under the default
/// `--max-event-skew`, and no tenant's windows close early.
#[test]
fn far_future_events_mixed_in_change_no_hot_list() {
    let dir = tempfile::tempdir().unwrap();
    let (events, sink, dead) = (dir.path().join("events.jsonl"), dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
    let future = |tenant: &str, scenario: &str| {
        format!(
            r#"{{"tenant_id":"{tenant}","scenario_id":"{scenario}","user_id":"u","item_id":"i0","action":"purchase","ts":4102444000000}}"#
        )
    };
    let mut lines: Vec<String> = std::fs::read_to_string(vectors().join("events.jsonl")).unwrap().lines().map(String::from).collect();
    lines.insert(4000, future("video", "feed"));
    lines.insert(2000, future("nobody", "x"));
    lines.insert(1000, future("shop", "home"));
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let status = Host::run()
        .job("item_hot_score")
        .view_off()
        .events_file(&events)
        .scenarios_dir(vectors().join("scenarios"))
        .jsonl_out(&sink)
        .dead_letter_file(&dead)
        .status();
    assert!(status.success(), "rtscore exited with {status}");
    let diffs = hot_differences(&load(&vectors().join("expected.jsonl")), &load(&sink), 1e-3);
    assert!(diffs.is_empty(), "{} differences, first: {:#?}", diffs.len(), &diffs[..diffs.len().min(10)]);
    let dead = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead.lines().filter(|l| l.contains(r#""kind":"ts_in_future""#)).count(), 3, "{dead}");
}

#[test]
fn comparison_detects_a_wrong_score() {
    // Guards the guard: a perturbed sink must fail the comparison.
    let want = load(&vectors().join("expected.jsonl"));
    let mut got = want.clone();
    let first = got.values_mut().find(|v| !v.is_empty()).unwrap();
    first[0].1 *= 1.01;
    assert_eq!(hot_differences(&want, &got, 1e-3).len(), 1);
}
