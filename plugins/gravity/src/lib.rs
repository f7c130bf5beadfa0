//! gravity: Hacker-News-style ranking, `Σ weight · count / (age_hours + 2)^gravity`, where the
//! age is the mean age of the item's weighted events. Unlike exponential decay, the penalty
//! depends on how old the item's activity is as a whole, not on each event separately.

use rtscore_guest::time::ms_to_hours;
use rtscore_guest::{Item, Scorer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// How fast age pulls scores down; HN uses 1.8.
    pub gravity: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { gravity: 1.8 }
    }
}

pub struct Gravity {
    gravity: f64,
}

impl Scorer for Gravity {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        if !(p.gravity.is_finite() && (0.0..=10.0).contains(&p.gravity)) {
            return Err(format!("gravity must be in 0..=10, got {}", p.gravity));
        }
        Ok(Self { gravity: p.gravity })
    }

    fn score_item(&self, item: &Item<'_>) -> f64 {
        let Some(age_ms) = item.mean_age_ms() else { return 0.0 };
        item.weighted_count() / (ms_to_hours(age_ms.max(0.0)) + 2.0).powf(self.gravity)
    }
}

rtscore_guest::export_scorer!(Gravity);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::testing::BatchBuilder;

    #[test]
    fn weighted_count_over_aged_denominator() {
        let batch = BatchBuilder::new()
            .weights([("view", 1.0), ("click", 3.0)])
            // Item a: 2 views at 30 min and 1 click at 90 min -> 5 points, mean age 50 min.
            .events([("a", "view", 1_800_000, 2), ("a", "click", 5_400_000, 1)])
            // Item b: the same points, all fresh.
            .events([("b", "view", 0, 2), ("b", "click", 0, 1)])
            .build();
        let scores = batch.run::<Gravity>("null").unwrap();
        let mean_age_h = (2.0 * 0.5 + 1.5) / 3.0;
        assert!((scores[0] - 5.0 / (mean_age_h + 2.0_f64).powf(1.8)).abs() < 1e-12);
        assert!((scores[1] - 5.0 / 2.0_f64.powf(1.8)).abs() < 1e-12);
        assert!(scores[1] > scores[0]);
    }

    #[test]
    fn gravity_param_and_validation() {
        let batch = BatchBuilder::new().weight("view", 1.0).event("a", "view", 3_600_000, 9).build();
        assert_eq!(batch.run::<Gravity>(r#"{"gravity": 0}"#).unwrap(), vec![9.0]);
        assert!((batch.run::<Gravity>(r#"{"gravity": 1}"#).unwrap()[0] - 3.0).abs() < 1e-12);
        assert!(batch.run::<Gravity>(r#"{"gravity": -1}"#).unwrap_err().contains("-1"));
        assert!(batch.run::<Gravity>(r#"{"gravty": 1}"#).is_err());
    }

    #[test]
    fn items_without_weighted_events_score_zero() {
        let batch = BatchBuilder::new().weight("view", 1.0).event("a", "share", 0, 4).build();
        assert_eq!(batch.run::<Gravity>("{}").unwrap(), vec![0.0]);
    }
}
