//! dwell-affinity: a user-profile plugin (world `profile`). Category affinity weighted by
//! dwell: each event adds `weight(action) * clamp(watch_time_ms / dwell_unit_ms, min_dwell,
//! max_dwell)` to its category (an event without watch time counts `min_dwell`), decayed from
//! the event's time to the update time; the existing interests (categories and tags alike) are
//! decayed from their time to the update time, with the scenario's half-life. Tags of new events
//! are not scored: a glance at an item says little about each of its tags. Interests that end
//! at or below 0 (negative weights) are dropped.

use rtscore_guest::profile::{Interest, Profiler, Scenario, User, add};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Watch time worth one unit of dwell, in ms.
    pub dwell_unit_ms: f64,
    /// Dwell of an event without watch time, and the least any event counts.
    pub min_dwell: f64,
    /// The most one event counts, so a tab left open does not dominate.
    pub max_dwell: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { dwell_unit_ms: 30_000.0, min_dwell: 0.25, max_dwell: 4.0 }
    }
}

/// Largest `max_dwell` accepted: one event at most this many times its action's weight.
const MAX_DWELL_CAP: f64 = 1_000.0;

#[derive(Debug)]
pub struct DwellAffinity {
    p: Params,
}

impl DwellAffinity {
    /// The dwell units an event counts.
    pub fn dwell(&self, watch_time_ms: Option<f64>) -> f64 {
        match watch_time_ms {
            Some(ms) if ms.is_finite() => (ms / self.p.dwell_unit_ms).clamp(self.p.min_dwell, self.p.max_dwell),
            _ => self.p.min_dwell,
        }
    }
}

impl Profiler for DwellAffinity {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        if !(p.dwell_unit_ms.is_finite() && p.dwell_unit_ms > 0.0) {
            return Err(format!("dwell_unit_ms must be a positive number of ms, got {}", p.dwell_unit_ms));
        }
        if !(p.min_dwell.is_finite() && p.min_dwell >= 0.0) {
            return Err(format!("min_dwell must be >= 0, got {}", p.min_dwell));
        }
        if !(p.max_dwell.is_finite() && p.max_dwell >= p.min_dwell && p.max_dwell <= MAX_DWELL_CAP) {
            return Err(format!("max_dwell must be between min_dwell ({}) and {MAX_DWELL_CAP}, got {}", p.min_dwell, p.max_dwell));
        }
        Ok(Self { p })
    }

    fn update(&self, scenario: &Scenario<'_>, user: &User<'_>, out: &mut Vec<Interest>) -> Result<(), String> {
        let at = user.update_ms();
        let kept = scenario.decay(user.interests_as_of_ms(), at);
        out.extend(user.interests().iter().map(|i| Interest { name: i.name.clone(), score: i.score * kept }));
        for e in user.events() {
            let (Some(category), w) = (&e.category, scenario.weight(&e.action)) else { continue };
            if w != 0.0 {
                add(out, category, w * self.dwell(e.watch_time_ms) * scenario.decay(e.ts_ms, at));
            }
        }
        out.retain(|i| i.score > 0.0 && i.score.is_finite());
        Ok(())
    }
}

rtscore_guest::export_profiler!(DwellAffinity);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::profile::{ProfileBatchBuilder, ProfileEvent, event};

    const DAY: i64 = 86_400_000;
    const NOW: i64 = rtscore_guest::testing::DEFAULT_WINDOW_END_MS;

    fn ev(item: &str, action: &str, ts: i64, category: Option<&str>, watch: Option<f64>) -> ProfileEvent {
        ProfileEvent { category: category.map(str::to_string), watch_time_ms: watch, tags: vec!["t".into()], ..event(item, action, ts) }
    }

    fn score(got: &[Interest], name: &str) -> f64 {
        got.iter().find(|i| i.name == name).map_or(0.0, |i| i.score)
    }

    #[test]
    fn dwell_weights_each_event_and_is_clamped() {
        let at = 10 * DAY;
        let b = ProfileBatchBuilder::new()
            .weight("view", 1.0)
            .weight("like", 3.0)
            .update_ms(at)
            .event("u", ev("i1", "view", at, Some("shoes"), Some(60_000.0))) // 2 units
            .event("u", ev("i2", "view", at, Some("shoes"), Some(1_000_000.0))) // clamped to 4
            .event("u", ev("i3", "like", at, Some("bags"), None)) // min 0.25
            .event("u", ev("i4", "like", at, Some("bags"), Some(1.0))) // clamped up to 0.25
            .event("u", ev("i5", "click", at, Some("hats"), Some(60_000.0))) // unweighted
            .event("u", ev("i6", "view", at, None, Some(60_000.0))) // no category
            .build();
        let got = b.run::<DwellAffinity>("null").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(score(&got[0], "shoes"), 6.0);
        assert_eq!(score(&got[0], "bags"), 1.5);
        assert_eq!(got[0].len(), 2, "no hats, no tags: {:?}", got[0]);
    }

    #[test]
    fn existing_interests_and_events_decay_to_the_update_time() {
        let at = 10 * DAY;
        let b = ProfileBatchBuilder::new()
            .weight("view", 2.0)
            .half_life_days(1.0)
            .update_ms(at)
            .interest("u", "shoes", 8.0)
            .interest("u", "red", 4.0)
            .interests_as_of("u", at - 2 * DAY)
            .event("u", ev("i1", "view", at - DAY, Some("shoes"), Some(30_000.0)))
            .build();
        let got = b.run::<DwellAffinity>(r#"{"dwell_unit_ms": 30000}"#).unwrap();
        assert!((score(&got[0], "shoes") - (8.0 * 0.25 + 2.0 * 0.5)).abs() < 1e-12, "{:?}", got[0]);
        assert!((score(&got[0], "red") - 1.0).abs() < 1e-12, "tags already held decay too");
        assert_eq!(got[0][0].name, "shoes", "strongest first");
    }

    #[test]
    fn params_change_the_dwell_and_negative_weights_drop_interests() {
        let b = ProfileBatchBuilder::new()
            .weight("view", 1.0)
            .weight("dislike", -5.0)
            .interest("u", "bags", 1.0)
            .event("u", ev("i1", "view", NOW, Some("shoes"), Some(10_000.0)))
            .event("u", ev("i2", "dislike", NOW, Some("bags"), None))
            .build();
        assert_eq!(score(&b.run::<DwellAffinity>("null").unwrap()[0], "shoes"), 1.0 / 3.0, "defaults: 10 s of a 30 s unit");
        let got = b.run::<DwellAffinity>(r#"{"dwell_unit_ms": 5000, "min_dwell": 1}"#).unwrap();
        assert_eq!(score(&got[0], "shoes"), 2.0);
        assert_eq!(got[0].iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["shoes"], "bags fell below 0");
    }

    #[test]
    fn bad_params_are_refused() {
        let b = ProfileBatchBuilder::new().build();
        assert!(b.run::<DwellAffinity>(r#"{"dwell_unit_ms": 0}"#).unwrap_err().contains("dwell_unit_ms"));
        assert!(b.run::<DwellAffinity>(r#"{"min_dwell": -1}"#).unwrap_err().contains("min_dwell"));
        assert!(b.run::<DwellAffinity>(r#"{"min_dwell": 5, "max_dwell": 4}"#).unwrap_err().contains("max_dwell"));
        assert!(b.run::<DwellAffinity>(r#"{"max_dwell": 5000}"#).unwrap_err().contains("max_dwell"));
        assert!(b.run::<DwellAffinity>(r#"{"dwel_unit_ms": 1}"#).unwrap_err().contains("unknown field"));
    }
}
