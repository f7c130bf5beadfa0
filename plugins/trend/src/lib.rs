//! trend: rising items first. The weighted count of the most recent `recent_minutes` of the
//! window, scaled by how much faster it arrived than in the rest of the window:
//! `recent · (recent_rate + s) / (older_rate + s)`, rates in weighted events per minute.

use rtscore_guest::math::safe_div;
use rtscore_guest::time::{minutes_to_ms, ms_to_minutes};
use rtscore_guest::{Item, Scorer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The "now" part of the window; the scenario's slide is a good choice.
    pub recent_minutes: f64,
    /// Added to both rates so a handful of events does not look like a surge.
    pub smoothing: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { recent_minutes: 15.0, smoothing: 1.0 }
    }
}

pub struct Trend {
    p: Params,
}

impl Scorer for Trend {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        if !(p.recent_minutes.is_finite() && p.recent_minutes > 0.0) {
            return Err(format!("recent_minutes must be > 0, got {}", p.recent_minutes));
        }
        if !(p.smoothing.is_finite() && p.smoothing > 0.0) {
            return Err(format!("smoothing must be > 0, got {}", p.smoothing));
        }
        Ok(Self { p })
    }

    fn score_item(&self, item: &Item<'_>) -> f64 {
        let recent_ms = minutes_to_ms(self.p.recent_minutes);
        let (mut recent, mut older) = (0.0, 0.0);
        for row in item.rows() {
            if row.age_mean_ms < recent_ms {
                recent += row.weighted_count();
            } else {
                older += row.weighted_count();
            }
        }
        let older_minutes = ms_to_minutes(item.batch().window_ms() as f64) - self.p.recent_minutes;
        let recent_rate = recent / self.p.recent_minutes;
        let older_rate = safe_div(older, older_minutes.max(0.0));
        recent * (recent_rate + self.p.smoothing) / (older_rate + self.p.smoothing)
    }
}

rtscore_guest::export_scorer!(Trend);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::testing::BatchBuilder;

    const MIN: i64 = 60_000;

    #[test]
    fn a_surge_beats_steady_traffic_of_the_same_recent_volume() {
        // 60-minute window: `steady` has 15 views per 15 minutes throughout, `surge` only now.
        let mut b = BatchBuilder::new().weight("view", 1.0);
        for m in 0..60 {
            b = b.event("steady", "view", m * MIN + 1_000, 1);
        }
        for m in 0..15 {
            b = b.event("surge", "view", m * MIN + 1_000, 1);
        }
        let s = b.build().run::<Trend>("null").unwrap();
        // steady: recent 15, rates 1/min and 1/min -> 15; surge: 15 * (1 + 1) / (0 + 1) = 30.
        assert!((s[0] - 15.0).abs() < 1e-9, "{}", s[0]);
        assert!((s[1] - 30.0).abs() < 1e-9, "{}", s[1]);
    }

    #[test]
    fn old_only_items_score_zero_and_params_are_checked() {
        let b = BatchBuilder::new().weight("view", 1.0).event("old", "view", 50 * MIN, 9).build();
        assert_eq!(b.run::<Trend>("{}").unwrap(), vec![0.0]);
        assert!(b.run::<Trend>(r#"{"recent_minutes": 0}"#).is_err());
        assert!(b.run::<Trend>(r#"{"smoothing": -1}"#).is_err());
    }
}
