//! fair-heat: the built-in heat with any one user's weight in an item capped, so a handful of
//! users (or one bot) replaying an action cannot make an item hot.
//!
//! `score = decayed_score · min(1, users · max_events_per_user / events)`, where `users` is the
//! number of distinct users who acted on the item in the window and `events` its event count.
//! An item whose events come from enough different users keeps its heat; one whose users
//! average more than `max_events_per_user` events each is scaled down to that average. It needs
//! one declared feature (its name is a param):
//!
//! ```json
//! "features": [{"name": "users", "op": "distinct", "field": "user_id"}]
//! ```
//!
//! The cap works on the average share per user (the window keeps distinct users per item, not
//! each user's count), which is exact for the case it is for: few users with many events each.

use rtscore_guest::{Batch, Scorer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The most events one user may contribute to an item's heat, on average.
    pub max_events_per_user: f64,
    /// The declared `distinct` feature of `user_id`.
    pub users_feature: String,
}

impl Default for Params {
    fn default() -> Self {
        Self { max_events_per_user: 3.0, users_feature: "users".into() }
    }
}

pub struct FairHeat {
    p: Params,
}

impl Scorer for FairHeat {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        if !(p.max_events_per_user.is_finite() && p.max_events_per_user >= 1.0) {
            return Err(format!("max_events_per_user must be at least 1, got {}", p.max_events_per_user));
        }
        Ok(Self { p })
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        let users = batch.feature(&self.p.users_feature).and_then(|f| f.numbers());
        for item in batch.items() {
            let heat = item.decayed_score();
            let factor = match users {
                Some(u) => share_factor(u[item.index()], item.count(), self.p.max_events_per_user),
                None => 1.0,
            };
            out.push(heat * factor);
        }
        Ok(())
    }
}

/// `min(1, users · cap / events)`: 1 when no event was counted.
pub fn share_factor(users: f64, events: u64, cap: f64) -> f64 {
    if events == 0 {
        return 1.0;
    }
    (users.max(1.0) * cap / events as f64).min(1.0)
}

rtscore_guest::export_scorer!(FairHeat);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::testing::BatchBuilder;

    #[test]
    fn one_user_replaying_is_capped_and_a_crowd_is_not() {
        let b = BatchBuilder::new()
            .weights([("click", 1.0)])
            .events([("bot", "click", 0, 300)])
            .feature("bot", "users", 1.0)
            .events([("crowd", "click", 0, 30)])
            .feature("crowd", "users", 25.0)
            .build();
        let scores = b.run::<FairHeat>(r#"{"max_events_per_user": 3}"#).unwrap();
        assert!((scores[0] - 3.0).abs() < 1e-9, "one user counts for 3 events: {scores:?}");
        assert!((scores[1] - 30.0).abs() < 1e-9, "25 users x 3 > 30 events: unchanged {scores:?}");
    }

    #[test]
    fn the_factor_is_bounded() {
        assert_eq!(share_factor(0.0, 0, 3.0), 1.0);
        assert_eq!(share_factor(100.0, 10, 3.0), 1.0);
        assert!((share_factor(2.0, 12, 3.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn params_are_checked() {
        let b = BatchBuilder::new().build();
        assert!(b.run::<FairHeat>(r#"{"max_events_per_user": 0.5}"#).unwrap_err().contains("max_events_per_user"));
    }
}
