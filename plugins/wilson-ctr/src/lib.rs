//! wilson-ctr: rank by the Wilson lower bound of the item's click-through rate in the window,
//! optionally times a volume factor `1 + volume_weight · ln(1 + impressions)`. A ratio with a
//! confidence bound: something per-action weights cannot express.

use rtscore_guest::math::{log_volume, wilson_lower_bound};
use rtscore_guest::{Item, Scorer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Normal quantile of the confidence level (1.96 for 95 %).
    pub z: f64,
    pub click_action: String,
    pub impression_action: String,
    /// Items with fewer impressions in the window score 0.
    pub min_impressions: u64,
    /// 0 ranks by the bound alone; larger values favour items seen more often.
    pub volume_weight: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { z: 1.96, click_action: "click".into(), impression_action: "impression".into(), min_impressions: 0, volume_weight: 0.0 }
    }
}

pub struct WilsonCtr {
    p: Params,
}

impl Scorer for WilsonCtr {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        if !(p.z.is_finite() && p.z > 0.0) {
            return Err(format!("z must be positive, got {}", p.z));
        }
        if !(p.volume_weight.is_finite() && p.volume_weight >= 0.0) {
            return Err(format!("volume_weight must be >= 0, got {}", p.volume_weight));
        }
        Ok(Self { p })
    }

    fn score_item(&self, item: &Item<'_>) -> f64 {
        let batch = item.batch();
        let count = |action: &str| batch.action_index(action).map_or(0, |a| item.count_of(a));
        let (clicks, impressions) = (count(&self.p.click_action), count(&self.p.impression_action));
        if impressions == 0 || impressions < self.p.min_impressions {
            return 0.0;
        }
        let n = impressions as f64;
        wilson_lower_bound(clicks as f64, n, self.p.z) * (1.0 + self.p.volume_weight * log_volume(n))
    }
}

rtscore_guest::export_scorer!(WilsonCtr);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::testing::BatchBuilder;

    fn batch() -> rtscore_guest::testing::TestBatch {
        BatchBuilder::new()
            .events([("a", "impression", 1_000, 10), ("a", "click", 1_000, 5)])
            .events([("b", "impression", 1_000, 1000), ("b", "click", 1_000, 500)])
            .events([("c", "click", 1_000, 3)])
            .event("d", "impression", 1_000, 4)
            .build()
    }

    #[test]
    fn more_evidence_at_the_same_rate_ranks_higher() {
        let s = batch().run::<WilsonCtr>("null").unwrap();
        assert!((s[0] - 0.236_593).abs() < 1e-5, "{}", s[0]);
        assert!(s[1] > s[0] && s[1] < 0.5);
        assert_eq!(s[2], 0.0, "clicks without impressions");
        assert_eq!(s[3], 0.0, "impressions without clicks");
    }

    #[test]
    fn params_change_the_formula() {
        let b = batch();
        let s = b.run::<WilsonCtr>(r#"{"min_impressions": 100}"#).unwrap();
        assert_eq!(s[0], 0.0);
        assert!(s[1] > 0.0);
        let plain = b.run::<WilsonCtr>("{}").unwrap();
        let vol = b.run::<WilsonCtr>(r#"{"volume_weight": 1.0}"#).unwrap();
        assert!((vol[0] - plain[0] * (1.0 + 11.0_f64.ln())).abs() < 1e-12);
        let renamed = b.run::<WilsonCtr>(r#"{"click_action": "impression", "impression_action": "impression"}"#).unwrap();
        assert!(renamed[3] > 0.0);
        assert!(b.run::<WilsonCtr>(r#"{"z": 0}"#).is_err());
    }

    #[test]
    fn batches_without_the_actions_score_zero() {
        let b = BatchBuilder::new().event("a", "view", 0, 1).build();
        assert_eq!(b.run::<WilsonCtr>("null").unwrap(), vec![0.0]);
    }
}
