//! The dropped-weights rule (DESIGN §3): a weight map that is present is taken whole, so a
//! partial map written as if it were a patch (the seed's own `$set {"config.realtime_compute":
//! {...}}` straight into MongoDB) would silently zero every action it leaves out. A new revision
//! whose `action_weights` or `behavior_weights` lacks actions the previous revision weighted is
//! therefore refused, unless the writer says so: the document carries `"replace_weights": true`
//! (rtscore's writes set it for `--drop-weights` / `?drop_weights=true` and remove it otherwise).
//! A map absent altogether still means the defaults. Pure: the stores and the registry call it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::validate::{DEFAULT_ACTION_WEIGHTS, DEFAULT_BEHAVIOR_WEIGHTS};
use super::{ConfigError, FieldError, ScenarioConfig};

/// The root marker a writer sets to replace weight maps on purpose.
pub const REPLACE_WEIGHTS: &str = "replace_weights";

const ACTION_WEIGHTS: &str = "config.realtime_compute.hot_score.action_weights";
const BEHAVIOR_WEIGHTS: &str = "config.realtime_compute.user_profile.behavior_weights";

/// The actions each weight map weights (`None`: unknown, e.g. a map that is not an object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightedActions {
    pub action_weights: Option<BTreeSet<String>>,
    pub behavior_weights: Option<BTreeSet<String>>,
}

impl WeightedActions {
    /// The actions of a validated (applied) config.
    pub fn of_config(cfg: &ScenarioConfig) -> Self {
        Self {
            action_weights: Some(cfg.hot_score.action_weights.keys().cloned().collect()),
            behavior_weights: Some(cfg.user_profile.behavior_weights.keys().cloned().collect()),
        }
    }

    /// The actions a raw (stored) document weights: its maps' keys, or the defaults where a map
    /// is absent. Works on documents that no longer validate.
    pub fn of_document(doc: &Value) -> Self {
        let keys = |section: &str, map: &str, defaults: &[(&str, f64)]| -> Option<BTreeSet<String>> {
            match doc.get("config").and_then(|c| c.get("realtime_compute")).and_then(|r| r.get(section)).and_then(|s| s.get(map)) {
                None | Some(Value::Null) => Some(defaults.iter().map(|(k, _)| (*k).to_string()).collect()),
                Some(Value::Object(m)) => Some(m.keys().cloned().collect()),
                Some(_) => None,
            }
        };
        Self {
            action_weights: keys("hot_score", "action_weights", &DEFAULT_ACTION_WEIGHTS),
            behavior_weights: keys("user_profile", "behavior_weights", &DEFAULT_BEHAVIOR_WEIGHTS),
        }
    }
}

/// One weight map of the new revision that lacks actions of the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedWeights {
    /// Dotted path of the map.
    pub path: &'static str,
    pub actions: Vec<String>,
}

/// The maps of `next` (a raw document) that drop actions of `previous`. Only maps present in
/// `next` count: an absent map means the defaults, as it always did.
pub fn dropped(previous: &WeightedActions, next: &Value) -> Vec<DroppedWeights> {
    let now = WeightedActions::of_document(next);
    let present = |section: &str, map: &str| {
        next.get("config")
            .and_then(|c| c.get("realtime_compute"))
            .and_then(|r| r.get(section))
            .and_then(|s| s.get(map))
            .is_some_and(Value::is_object)
    };
    let mut out = Vec::new();
    for (path, before, after, is_present) in [
        (ACTION_WEIGHTS, &previous.action_weights, &now.action_weights, present("hot_score", "action_weights")),
        (BEHAVIOR_WEIGHTS, &previous.behavior_weights, &now.behavior_weights, present("user_profile", "behavior_weights")),
    ] {
        if let (true, Some(before), Some(after)) = (is_present, before, after) {
            let actions: Vec<String> = before.difference(after).cloned().collect();
            if !actions.is_empty() {
                out.push(DroppedWeights { path, actions });
            }
        }
    }
    out
}

/// Whether `doc` carries `"replace_weights": true`.
pub fn replaces_weights(doc: &Value) -> bool {
    doc.get(REPLACE_WEIGHTS) == Some(&Value::Bool(true))
}

/// The refusal of a revision that drops weights: one error per map, naming the actions and how
/// to proceed. `previous_revision` names what they were weighted in.
pub fn refusal(dropped: &[DroppedWeights], previous_revision: Option<i64>) -> Vec<FieldError> {
    let was = previous_revision.map_or_else(|| "the previous revision".to_string(), |r| format!("revision {r}"));
    dropped
        .iter()
        .map(|d| FieldError {
            path: d.path.to_string(),
            rule: format!(
                "drops actions weighted in {was}: {}; a map that is present is taken whole, so they would weigh 0. \
                 Write them with weight 0 to stop weighting them, or replace the map on purpose \
                 (--drop-weights, ?drop_weights=true, or \"{REPLACE_WEIGHTS}\": true in the document)",
                d.actions.join(", ")
            ),
        })
        .collect()
}

/// The write-path check against the stored document: refuses a new revision `next` that drops
/// weights of `stored` without the marker; otherwise removes a marker that is not needed, so it
/// never carries over to a later revision. Returns the drops the marker allowed.
pub fn guard_write(stored: Option<&Value>, next: &mut Value) -> Result<Vec<DroppedWeights>, ConfigError> {
    let drops = stored.map(|s| dropped(&WeightedActions::of_document(s), next)).unwrap_or_default();
    if drops.is_empty() {
        if let Value::Object(m) = next {
            m.remove(REPLACE_WEIGHTS);
        }
        return Ok(drops);
    }
    if replaces_weights(next) {
        return Ok(drops);
    }
    let label = match (next.get("tenant_id").and_then(Value::as_str), next.get("scenario_id").and_then(Value::as_str)) {
        (Some(t), Some(s)) => Some(format!("{t}/{s}")),
        _ => None,
    };
    Err(ConfigError { scenario: label, errors: refusal(&drops, stored.and_then(|s| s.get("revision")).and_then(Value::as_i64)) })
}

/// Warnings for drops a marker allowed, so the writer sees what it zeroed.
pub fn allowed_warnings(drops: &[DroppedWeights]) -> Vec<FieldError> {
    drops
        .iter()
        .map(|d| FieldError {
            path: d.path.to_string(),
            rule: format!("no longer weights {} ({REPLACE_WEIGHTS}): they weigh 0 from this revision", d.actions.join(", ")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(weights: Value) -> Value {
        json!({"tenant_id": "t", "scenario_id": "s", "revision": 3, "config": {"realtime_compute": {"hot_score": {"action_weights": weights}}}})
    }

    #[test]
    fn a_partial_map_over_the_defaults_drops_the_others() {
        // The seed's `$set config.realtime_compute` with only purchase, over a default document.
        let before = json!({"tenant_id": "t", "scenario_id": "s"});
        let d = dropped(&WeightedActions::of_document(&before), &doc(json!({"purchase": 15})));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, ACTION_WEIGHTS);
        assert_eq!(d[0].actions, ["click", "comment", "favorite", "impression", "like", "share", "view"]);
    }

    #[test]
    fn absent_maps_zero_weights_and_additions_are_not_drops() {
        let before = doc(json!({"click": 2, "view": 1}));
        let prev = WeightedActions::of_document(&before);
        assert!(dropped(&prev, &doc(json!({"click": 2, "view": 0, "buy": 1}))).is_empty(), "weight 0 keeps the action listed");
        assert!(dropped(&prev, &json!({"tenant_id": "t", "scenario_id": "s"})).is_empty(), "an absent map means the defaults");
        let behavior = json!({"config": {"realtime_compute": {"user_profile": {"behavior_weights": {"like": 1}}}}});
        let d = dropped(&prev, &behavior);
        assert_eq!((d[0].path, d[0].actions.clone()), (BEHAVIOR_WEIGHTS, vec!["favorite".into(), "purchase".into(), "view".into()]));
    }

    #[test]
    fn the_write_guard_refuses_without_the_marker_and_clears_an_unneeded_one() {
        let stored = doc(json!({"click": 2, "view": 1}));
        let mut next = doc(json!({"click": 5}));
        let err = guard_write(Some(&stored), &mut next).unwrap_err();
        assert_eq!(err.errors[0].path, ACTION_WEIGHTS);
        assert!(err.errors[0].rule.contains("revision 3: view"), "{err}");
        assert!(err.errors[0].rule.contains("weight 0") && err.errors[0].rule.contains("--drop-weights"), "{err}");

        next[REPLACE_WEIGHTS] = true.into();
        let allowed = guard_write(Some(&stored), &mut next).unwrap();
        assert_eq!(allowed[0].actions, ["view"]);
        assert!(allowed_warnings(&allowed)[0].rule.contains("view"));
        assert_eq!(next[REPLACE_WEIGHTS], true, "kept: the hosts check it too");

        let mut same = doc(json!({"click": 5, "view": 1}));
        same[REPLACE_WEIGHTS] = true.into();
        assert!(guard_write(Some(&stored), &mut same).unwrap().is_empty());
        assert!(same.get(REPLACE_WEIGHTS).is_none(), "a marker that allows nothing is not stored");
        assert!(guard_write(None, &mut doc(json!({"click": 1}))).unwrap().is_empty(), "a new scenario drops nothing");
    }
}
