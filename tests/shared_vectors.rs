//! The shared hot-score vectors (tests/vectors/hot, copied from the product's independent
//! expected outputs) replayed through the real binary: every window's hot list must match to a
//! relative 1e-3 (DESIGN §4, §7).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

type Windows = BTreeMap<(String, i64), Vec<(String, f64)>>;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/hot")
}

fn load(path: &Path) -> Windows {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Windows::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line in {}: {e}: {line}", path.display()));
        if v["kind"] != "hot" {
            continue;
        }
        let key = format!("{}/{}", v["tenant_id"].as_str().unwrap(), v["scenario_id"].as_str().unwrap());
        let items = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["item_id"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap()))
            .collect();
        out.insert((key, v["window_end"].as_i64().unwrap()), items);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1e-9)
}

/// Differences between an expected and an actual sink, accepting ties at the top-N cut.
fn differences(want: &Windows, got: &Windows) -> Vec<String> {
    let mut diffs = Vec::new();
    for (key, w) in want {
        let Some(g) = got.get(key) else {
            if !w.is_empty() {
                diffs.push(format!("missing window {key:?}"));
            }
            continue;
        };
        let cut = w.last().map_or(0.0, |x| x.1);
        let gm: BTreeMap<_, _> = g.iter().cloned().collect();
        let wm: BTreeMap<_, _> = w.iter().cloned().collect();
        for (item, s) in w {
            match gm.get(item) {
                Some(gs) if !close(*gs, *s) => diffs.push(format!("{key:?} {item}: got {gs} want {s}")),
                None if !close(*s, cut) => diffs.push(format!("{key:?} {item} absent (want {s})")),
                _ => {}
            }
        }
        for (item, s) in g {
            if !wm.contains_key(item) && !close(*s, cut) {
                diffs.push(format!("{key:?} {item} extra ({s})"));
            }
        }
    }
    for (key, g) in got {
        if !want.contains_key(key) && !g.is_empty() {
            diffs.push(format!("extra window {key:?}"));
        }
    }
    diffs
}

#[test]
fn replay_of_shared_vectors_matches_expected_hot_lists() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_rtscore"))
        .args(["run", "--job", "item_hot_score", "--view", "off", "--events-file"])
        .arg(vectors().join("events.jsonl"))
        .arg("--scenarios-dir")
        .arg(vectors().join("scenarios"))
        .arg("--jsonl-out")
        .arg(&sink)
        .status()
        .expect("run rtscore");
    assert!(status.success(), "rtscore exited with {status}");
    let want = load(&vectors().join("expected.jsonl"));
    let got = load(&sink);
    assert_eq!(want.len(), 45, "the vectors hold 45 windows");
    let diffs = differences(&want, &got);
    assert!(diffs.is_empty(), "{} differences, first: {:#?}", diffs.len(), &diffs[..diffs.len().min(10)]);
}

#[test]
fn comparison_detects_a_wrong_score() {
    // Guards the guard: a perturbed sink must fail the comparison.
    let want = load(&vectors().join("expected.jsonl"));
    let mut got = want.clone();
    let first = got.values_mut().find(|v| !v.is_empty()).unwrap();
    first[0].1 *= 1.01;
    assert_eq!(differences(&want, &got).len(), 1);
}
