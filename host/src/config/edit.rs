//! Editing scenario documents the way the seed's admin API does: a partial body is deep-merged
//! into the stored document (objects merge key by key, everything else is replaced), then the
//! result is validated and its `revision` bumped. Shared by `rtscore scenario` and the admin API.

use serde_json::{Map, Value};

use super::{Checked, ConfigError, FieldError, ScenarioConfig, parse_scenario_checked};

/// Merges `patch` into `base`: objects recursively, any other value replaces. A `null` in the
/// patch removes the key, so a field can be returned to its default.
pub fn deep_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The document the scenario's `candidate` describes: its `hot_score` section (and a `plugin`
/// shorthand for `hot_score.plugin`), its `metrics` and `user_profile` sections deep-merged over
/// the live config, with the `candidate` field and any `effective_from_window_end` removed.
/// `None` when there is no candidate; the result is not validated.
pub fn candidate_document(doc: &Value) -> Option<Value> {
    let cand = doc.get("candidate").filter(|c| !c.is_null())?;
    let mut merged = doc.clone();
    if let Value::Object(m) = &mut merged {
        m.remove("candidate");
        m.remove("effective_from_window_end");
    }
    if cand.get("hot_score").is_some() || cand.get("plugin").is_some() {
        let mut patch = cand.get("hot_score").cloned().unwrap_or_else(|| Value::Object(Map::new()));
        if let (Value::Object(p), Some(plugin)) = (&mut patch, cand.get("plugin")) {
            p.insert("plugin".into(), plugin.clone());
        }
        // Indexing a missing key of an object (or a null) creates it, so a document without a
        // hot_score section still merges.
        deep_merge(&mut merged["config"]["realtime_compute"]["hot_score"], &patch);
    }
    for job in ["metrics", "user_profile"] {
        if let Some(section) = cand.get(job) {
            deep_merge(&mut merged["config"]["realtime_compute"][job], section);
        }
    }
    Some(merged)
}

/// The next version of a stored document: `candidate` validated, with `revision` one above the
/// stored one (or 1 for a new scenario) and `updated_at` set to `now_ms`. Platform fields of
/// the document are kept as they are. A revision that drops weighted actions of the stored one
/// is refused unless it carries `replace_weights` (`super::weights_guard`).
pub fn next_revision(stored: Option<&Value>, candidate: Value, now_ms: i64) -> Result<(Value, ScenarioConfig), ConfigError> {
    next_revision_checked(stored, candidate, now_ms).map(|(doc, checked)| (doc, checked.config))
}

/// [`next_revision`] with the warnings the writer should see (platform fields, weights a
/// `replace_weights` marker dropped).
pub fn next_revision_checked(stored: Option<&Value>, mut candidate: Value, now_ms: i64) -> Result<(Value, Checked), ConfigError> {
    let previous = stored.and_then(|d| d.get("revision")).and_then(Value::as_i64).unwrap_or(0);
    if let Value::Object(m) = &mut candidate {
        m.insert("revision".into(), Value::from(previous + 1));
        m.insert("updated_at".into(), Value::from(now_ms));
    }
    parse_scenario_checked(&candidate)?;
    super::weights_guard::guard_write(stored, &mut candidate)?;
    // Parsed again: the guard may have removed an unneeded marker (and its warning).
    let mut checked = parse_scenario_checked(&candidate)?;
    checked.warnings = write_warnings(stored, &candidate);
    Ok((candidate, checked))
}

/// What the writer of `next` (over `stored`) should hear: the document's warnings and the
/// weighted actions a `replace_weights` marker dropped.
pub fn write_warnings(stored: Option<&Value>, next: &Value) -> Vec<FieldError> {
    use super::weights_guard::{WeightedActions, allowed_warnings, dropped, replaces_weights};
    let mut warnings = parse_scenario_checked(next).map(|c| c.warnings).unwrap_or_default();
    if let Some(s) = stored.filter(|_| replaces_weights(next)) {
        // The dropped actions say more than the marker's generic warning, which is for
        // documents written straight into the store.
        warnings.retain(|w| w.path != super::weights_guard::REPLACE_WEIGHTS);
        warnings.extend(allowed_warnings(&dropped(&WeightedActions::of_document(s), next)));
    }
    warnings
}

/// A write's "drop weights on purpose" (`--drop-weights`, `?drop_weights=true`): the marker
/// set in the body, or in the patch, before it is merged and validated.
pub fn request_drop_weights(body: &mut Value) {
    if let Value::Object(m) = body {
        m.insert(super::weights_guard::REPLACE_WEIGHTS.into(), Value::Bool(true));
    }
}

/// A new scenario document for `tenant/scenario` with an empty config (all defaults).
pub fn new_document(tenant: &str, scenario: &str) -> Value {
    let mut m = Map::new();
    m.insert("tenant_id".into(), tenant.into());
    m.insert("scenario_id".into(), scenario.into());
    m.insert("status".into(), "active".into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_example_only_raises_purchase() {
        let mut doc = json!({"tenant_id": "t", "scenario_id": "s", "owner": "team-a", "revision": 4, "config": {"realtime_compute": {"hot_score": {
            "action_weights": {"view": 1.0, "click": 2.0, "purchase": 10.0}, "decay_lambda": 0.1}}}});
        let before = doc.clone();
        deep_merge(&mut doc, &json!({"config": {"realtime_compute": {"hot_score": {"action_weights": {"purchase": 15.0}}}}}));
        let hot = &doc["config"]["realtime_compute"]["hot_score"];
        assert_eq!(hot["action_weights"], json!({"view": 1.0, "click": 2.0, "purchase": 15.0}));
        assert_eq!(hot["decay_lambda"], 0.1);
        assert_eq!(doc["owner"], "team-a");
        let (next, cfg) = next_revision(Some(&before), doc, 1_000).unwrap();
        assert_eq!(next["revision"], 5);
        assert_eq!(cfg.hot_score.weight("purchase"), 15.0);
    }

    #[test]
    fn candidate_merges_over_live_hot_score() {
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "effective_from_window_end": 5, "config": {"realtime_compute": {"hot_score": {
            "action_weights": {"view": 1.0, "click": 2.0}, "top_n": 7}}},
            "candidate": {"hot_score": {"action_weights": {"click": 5.0}}, "plugin": {"name": "gravity", "version": "0.1.0"}}});
        let c = candidate_document(&doc).unwrap();
        assert_eq!(c["config"]["realtime_compute"]["hot_score"]["action_weights"], json!({"view": 1.0, "click": 5.0}));
        assert_eq!(c["config"]["realtime_compute"]["hot_score"]["top_n"], 7);
        assert_eq!(c["config"]["realtime_compute"]["hot_score"]["plugin"]["name"], "gravity");
        assert!(c.get("candidate").is_none() && c.get("effective_from_window_end").is_none());
        assert!(candidate_document(&json!({"tenant_id": "t"})).is_none());
        let bare = candidate_document(&json!({"tenant_id": "t", "candidate": {"hot_score": {"top_n": 3}}})).unwrap();
        assert_eq!(bare["config"]["realtime_compute"]["hot_score"]["top_n"], 3);
    }

    #[test]
    fn promoting_a_job_plugin_candidate_keeps_the_rest_of_the_section() {
        let plugin = |n: &str| json!({"plugin": {"name": n, "version": "1.0.0"}});
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {
            "metrics": {"window_size_minutes": 10, "plugin": {"name": "old", "version": "1.0.0"}}}},
            "candidate": {"metrics": plugin("new"), "user_profile": plugin("dwell")}});
        let c = candidate_document(&doc).unwrap();
        let rc = &c["config"]["realtime_compute"];
        assert_eq!((rc["metrics"]["plugin"]["name"].as_str(), rc["metrics"]["window_size_minutes"].as_i64()), (Some("new"), Some(10)));
        assert_eq!(rc["user_profile"]["plugin"]["name"], "dwell");
        assert!(rc.get("hot_score").is_none(), "hot score untouched: {rc}");
    }

    #[test]
    fn null_removes_and_invalid_result_is_refused() {
        let mut doc = json!({"a": {"b": 1, "c": 2}});
        deep_merge(&mut doc, &json!({"a": {"b": null}}));
        assert_eq!(doc, json!({"a": {"c": 2}}));
        let bad = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"top_n": 0}}}});
        assert!(next_revision(None, bad, 0).is_err());
    }
}
