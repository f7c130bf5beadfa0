//! Backtests: the same recorded events and documents give the same sink byte for byte, and
//! `rtscore diff` reports identical runs as fully overlapping and a changed weight where it acts.

use std::path::Path;

use rtscore_testkit::hot_vectors as vectors;
use rtscore_testkit::{Host, rtscore_command};

fn replay(scenarios: &Path, out: &Path) {
    let st = Host::run().job("all").view_off().events_file(vectors().join("events.jsonl")).scenarios_dir(scenarios).jsonl_out(out).status();
    assert!(st.success());
}

fn diff_json(a: &Path, b: &Path) -> Vec<serde_json::Value> {
    let out = rtscore_command().args(["diff", "--json", "-k", "10"]).arg(a).arg(b).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn replays_are_byte_identical_and_diff_finds_what_a_change_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"), dir.path().join("c.jsonl"));
    replay(&vectors().join("scenarios"), &a);
    replay(&vectors().join("scenarios"), &b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same input, same output, byte for byte");

    let same = diff_json(&a, &b);
    assert_eq!(same.len(), 3);
    assert!(same.iter().all(|r| r["mean_jaccard"] == 1.0 && r["mean_rbo"].as_f64().unwrap() > 0.999999 && r["drift_max"] == 0.0));

    // A candidate: shop/home's purchase weight tripled.
    let cand = dir.path().join("candidate");
    std::fs::create_dir_all(&cand).unwrap();
    for e in std::fs::read_dir(vectors().join("scenarios")).unwrap() {
        let p = e.unwrap().path();
        let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        if doc["scenario_id"] == "home" {
            doc["config"]["realtime_compute"]["hot_score"]["action_weights"]["purchase"] = 30.0.into();
        }
        std::fs::write(cand.join(p.file_name().unwrap()), serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    replay(&cand, &c);
    let changed = diff_json(&a, &c);
    let by: std::collections::BTreeMap<&str, &serde_json::Value> = changed.iter().map(|r| (r["scenario"].as_str().unwrap(), r)).collect();
    assert!(by["shop/home"]["mean_jaccard"].as_f64().unwrap() < 1.0 && by["shop/home"]["drift_max"].as_f64().unwrap() > 0.0);
    assert!(!by["shop/home"]["entering"].as_array().unwrap().is_empty());
    assert_eq!(by["shop/search"]["mean_jaccard"], 1.0, "untouched scenarios do not move");
    assert_eq!(diff_json(&a, &c), changed, "the report is deterministic");
}
