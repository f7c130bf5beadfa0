//! Shadow evaluation: a scenario's candidate scores the same window batch as the live config,
//! with its own weights, decay, top_n and plugin instance, and its list is compared with the
//! live one. Nothing here can change the live list: the candidate only ever writes its own
//! output, and its plugin failures stay in its own scorer.

use crate::config::{HotScoreConfig, ScenarioKey};
use crate::output::{ScoredItem, ShadowComparison};
use crate::plugin::ScenarioScorer;
use crate::scoring::ranking::{drift_ratios, overlap_at, percentile, rbo_at};

/// A scenario's candidate lane.
pub struct ShadowLane {
    pub hot: HotScoreConfig,
    /// A scorer of its own: a trapping candidate module is contained here.
    pub scorer: ScenarioScorer,
    /// The comparison of the last shadowed window, for status and metrics.
    pub last: Option<(i64, ShadowComparison)>,
    pub last_plugin_error: Option<String>,
    pub(super) scores: Vec<f64>,
}

impl ShadowLane {
    pub fn new(key: &ScenarioKey, hot: HotScoreConfig) -> Self {
        Self { hot, scorer: ScenarioScorer::new(key.clone()).for_shadow(), last: None, last_plugin_error: None, scores: Vec::new() }
    }

    /// Takes a new candidate config; the plugin scorer stays (the coordinator swaps it if the
    /// reference changed).
    pub fn update(&mut self, hot: HotScoreConfig) {
        self.hot = hot;
    }
}

/// Compares a shadow list with the live one at depth `k`.
pub fn compare(live: &[ScoredItem], shadow: &[ScoredItem], k: usize) -> ShadowComparison {
    let pairs = |v: &[ScoredItem]| v.iter().map(|i| (i.item_id.clone(), i.score)).collect::<Vec<_>>();
    let (a, b) = (pairs(live), pairs(shadow));
    let mut drift = drift_ratios(&a, &b, k);
    drift.sort_by(f64::total_cmp);
    ShadowComparison {
        k,
        overlap_at_k: overlap_at(&a, &b, k),
        rbo: rbo_at(&a, &b, k, 0.9),
        drift_p50: percentile(&drift, 0.5),
        drift_p90: percentile(&drift, 0.9),
        drift_max: drift.last().copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: &[(&str, f64)]) -> Vec<ScoredItem> {
        v.iter().map(|(i, s)| ScoredItem { item_id: i.to_string(), score: *s }).collect()
    }

    #[test]
    fn identical_lists_compare_as_equal_and_changes_show() {
        let live = items(&[("a", 4.0), ("b", 2.0)]);
        let same = compare(&live, &live, 10);
        assert_eq!((same.overlap_at_k, same.drift_max), (1.0, 0.0));
        assert!((same.rbo - 1.0).abs() < 1e-12);
        let moved = compare(&live, &items(&[("a", 8.0), ("c", 3.0)]), 10);
        assert_eq!((moved.overlap_at_k, moved.drift_max, moved.drift_p50), (0.5, 1.0, 1.0));
    }
}
