//! Test input: event lines, scenario directories, generated traffic.

use std::path::{Path, PathBuf};

/// One JSON event line.
pub fn event_line(tenant: &str, scenario: &str, item: &str, action: &str, ts: i64) -> Vec<u8> {
    format!(r#"{{"tenant_id":"{tenant}","scenario_id":"{scenario}","user_id":"u","item_id":"{item}","action":"{action}","ts":{ts}}}"#)
        .into_bytes()
}

/// Skewed random traffic for one scenario: an event every 2 s from `from` to `to`, items
/// `i0..i39` (low numbers hotter), actions from `actions`.
pub fn traffic(seed: u64, from: i64, to: i64, actions: &[&str]) -> Vec<rtscore::scoring::reference::RefEvent> {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(seed);
    let n = ((to - from) / 2_000) as usize;
    (0..n)
        .map(|i| rtscore::scoring::reference::RefEvent {
            item_id: format!("i{}", (rng.random::<f64>().powi(2) * 40.0) as u32),
            action: actions[rng.random_range(0..actions.len())].into(),
            ts: from + i as i64 * 2_000,
        })
        .collect()
}

/// A `scenarios/` directory under `parent` holding `docs`, one `<scenario_id>.json` each, for
/// hosts run with `--scenarios-dir`.
pub fn write_scenarios(parent: &Path, docs: &[serde_json::Value]) -> PathBuf {
    let dir = parent.join("scenarios");
    std::fs::create_dir_all(&dir).expect("create scenarios dir");
    for d in docs {
        let id = d["scenario_id"].as_str().expect("document has a scenario_id");
        std::fs::write(dir.join(format!("{id}.json")), serde_json::to_vec(d).expect("serialise")).expect("write scenario");
    }
    dir
}
