//! What hosts write: hot lists in a JSONL sink, compared at a tolerance, and the status hash in
//! Redis.

use std::collections::BTreeMap;
use std::path::Path;

/// Hot lists of a JSONL sink, by (tenant/scenario, window_end), in emission order.
pub type SinkWindows = BTreeMap<(String, i64), Vec<(String, f64)>>;

pub fn read_hot_sink(path: &Path) -> (SinkWindows, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut windows = SinkWindows::new();
    let mut records = Vec::new();
    // Only complete lines: the host may be mid-write.
    for line in text.lines().filter(|l| l.ends_with('}')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["kind"] == "hot" {
            let key = format!("{}/{}", v["tenant_id"].as_str().unwrap(), v["scenario_id"].as_str().unwrap());
            let items = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["item_id"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap()))
                .collect();
            windows.insert((key, v["window_end"].as_i64().unwrap()), items);
        }
        records.push(v);
    }
    (windows, records)
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

/// Differences between expected and actual hot lists at relative tolerance `rel`; ties at the
/// top-N cut are accepted. Windows whose expected list is empty may be absent.
pub fn hot_differences(want: &SinkWindows, got: &SinkWindows, rel: f64) -> Vec<String> {
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
                Some(gs) if !close(*gs, *s, rel) => diffs.push(format!("{key:?} {item}: got {gs} want {s}")),
                None if !close(*s, cut, rel) => diffs.push(format!("{key:?} {item} absent (want {s})")),
                _ => {}
            }
        }
        for (item, s) in g {
            if !wm.contains_key(item) && !close(*s, cut, rel) {
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

/// Checks every sink record of `kind` (`hot` or `shadow`) against the reference hot lists that
/// `want(record)` picks (by its revision, say), at relative tolerance 1e-3. Returns how many
/// records were checked.
pub fn check_against_reference<'w>(
    records: &[serde_json::Value],
    kind: &str,
    mut want: impl FnMut(&serde_json::Value) -> &'w BTreeMap<i64, Vec<(String, f64)>>,
) -> usize {
    let mut checked = 0;
    for r in records.iter().filter(|r| r["kind"] == kind) {
        let end = r["window_end"].as_i64().unwrap();
        let expected = want(r).get(&end).cloned().unwrap_or_default();
        let got: Vec<(String, f64)> =
            r["items"].as_array().unwrap().iter().map(|i| (i["item_id"].as_str().unwrap().into(), i["score"].as_f64().unwrap())).collect();
        let diffs = hot_differences(&BTreeMap::from([(("w".into(), end), expected)]), &BTreeMap::from([(("w".into(), end), got)]), 1e-3);
        assert!(diffs.is_empty(), "{kind} window {end} (revision {}): {diffs:?}", r["config_revision"]);
        checked += 1;
    }
    checked
}

/// The status hash a host writes for `tenant/scenario`.
pub fn status_of(redis: &mut redis::Connection, tenant: &str, scenario: &str) -> BTreeMap<String, String> {
    redis::Commands::hgetall(redis, format!("rt:{tenant}:{scenario}:status")).unwrap_or_default()
}
