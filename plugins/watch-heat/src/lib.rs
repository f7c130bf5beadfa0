//! watch-heat (video): the built-in heat, raised by how much of its videos people watch.
//!
//! `score = decayed_score · (1 + completion_weight · completion)`, where `completion` is the
//! mean share of the video watched per view, `watch / (views · duration)` clamped to 0..=1, and
//! `decayed_score` is the built-in `Σ weight · count · exp(-λ·age)`. Two features declared in
//! the scenario feed it (names are params):
//!
//! ```json
//! "features": [
//!   {"name": "watch_ms", "op": "sum", "field": "watch_time_ms", "actions": ["view"]},
//!   {"name": "duration_ms", "op": "max", "field": "props.duration_ms"}
//! ]
//! ```
//!
//! An item without a known duration or without views scores its built-in heat alone.

use rtscore_guest::{Batch, Scorer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// How much full completion multiplies the heat by, on top of 1: 1.0 doubles it.
    pub completion_weight: f64,
    /// The action whose events carry the watch time.
    pub view_action: String,
    /// The declared `sum` feature of watch time, ms.
    pub watch_feature: String,
    /// The declared `max` feature of the video's duration, ms.
    pub duration_feature: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            completion_weight: 1.0,
            view_action: "view".into(),
            watch_feature: "watch_ms".into(),
            duration_feature: "duration_ms".into(),
        }
    }
}

pub struct WatchHeat {
    p: Params,
}

impl Scorer for WatchHeat {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        if !(p.completion_weight.is_finite() && (0.0..=100.0).contains(&p.completion_weight)) {
            return Err(format!("completion_weight must be in 0..=100, got {}", p.completion_weight));
        }
        Ok(Self { p })
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        // Resolved once per window; a scenario that declares neither feature scores like the
        // built-in formula, so the plugin can be referenced before the features are declared.
        let watch = batch.feature(&self.p.watch_feature).and_then(|f| f.numbers());
        let duration = batch.feature(&self.p.duration_feature).and_then(|f| f.numbers());
        let view = batch.action_index(&self.p.view_action);
        for item in batch.items() {
            let k = item.index();
            let views = view.map_or(0, |v| item.count_of(v));
            let completion = match (watch, duration) {
                (Some(w), Some(d)) => completion(w[k], views, d[k]),
                _ => 0.0,
            };
            out.push(item.decayed_score() * (1.0 + self.p.completion_weight * completion));
        }
        Ok(())
    }
}

/// Mean share of the video watched per view, in 0..=1; 0 when unknown.
pub fn completion(watch_ms: f64, views: u64, duration_ms: f64) -> f64 {
    if views == 0 || duration_ms <= 0.0 {
        return 0.0;
    }
    (watch_ms / (views as f64 * duration_ms)).clamp(0.0, 1.0)
}

rtscore_guest::export_scorer!(WatchHeat);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::testing::BatchBuilder;

    fn batch() -> rtscore_guest::testing::TestBatch {
        BatchBuilder::new()
            .weights([("view", 1.0), ("like", 2.0)])
            // Same traffic on both; "full" is watched to the end, "skipped" for a tenth.
            .events([("full", "view", 60_000, 4), ("full", "like", 60_000, 1)])
            .events([("skipped", "view", 60_000, 4), ("skipped", "like", 60_000, 1)])
            .events([("unknown", "view", 60_000, 4)])
            .feature("full", "watch_ms", 4.0 * 30_000.0)
            .feature("full", "duration_ms", 30_000.0)
            .feature("skipped", "watch_ms", 4.0 * 3_000.0)
            .feature("skipped", "duration_ms", 30_000.0)
            .build()
    }

    #[test]
    fn completion_multiplies_the_built_in_heat() {
        let b = batch();
        let scores = b.run::<WatchHeat>(r#"{"completion_weight": 1.0}"#).unwrap();
        let base = b.run::<WatchHeat>(r#"{"completion_weight": 0.0}"#).unwrap();
        assert!((scores[0] - 2.0 * base[0]).abs() < 1e-9, "full completion doubles: {scores:?} vs {base:?}");
        assert!((scores[1] - 1.1 * base[1]).abs() < 1e-9, "a tenth adds a tenth: {scores:?} vs {base:?}");
        assert_eq!(scores[2], base[2], "no duration known: the built-in heat");
    }

    #[test]
    fn completion_is_clamped_and_zero_when_unknown() {
        assert_eq!(completion(10.0, 0, 5.0), 0.0);
        assert_eq!(completion(10.0, 1, 0.0), 0.0);
        assert_eq!(completion(10.0, 1, 5.0), 1.0, "rewatches count as full completion");
        assert!((completion(5.0, 2, 5.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn without_declared_features_it_is_the_built_in_formula() {
        let b = BatchBuilder::new().weights([("view", 1.0)]).events([("a", "view", 1_000, 3)]).build();
        let scores = b.run::<WatchHeat>("null").unwrap();
        let expected = 3.0 * rtscore_guest::decay::exp_decay(0.1, 1_000.0);
        assert!((scores[0] - expected).abs() / expected < 1e-6, "{scores:?} vs {expected}");
    }

    #[test]
    fn params_are_checked() {
        let b = BatchBuilder::new().build();
        assert!(b.run::<WatchHeat>(r#"{"completion_weight": -1}"#).unwrap_err().contains("completion_weight"));
        assert!(b.run::<WatchHeat>(r#"{"completion_wieght": 1}"#).is_err());
    }
}
