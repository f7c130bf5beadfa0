//! Revision history and the rollout operations built on it: store a new revision (with the event
//! time it takes effect from), promote a shadow candidate, roll back to an earlier revision.
//! History is append-only: every stored revision is kept (`scenario_history` in MongoDB,
//! `.history/` in a scenarios directory), and a rollback stores the old content as a new
//! revision. Shared by `rtscore scenario` and the admin API.

use serde_json::Value;

use super::edit::candidate_document;
use super::layers::next_revision_over;
use super::store::{RevisionConflict, ScenarioStore};
use super::switch::EffectiveFrom;
use super::{ConfigError, ScenarioConfig};

/// Why a rollout operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("no scenario {tenant}/{scenario} in the store")]
    NotFound { tenant: String, scenario: String },
    #[error("scenario {0} has no candidate to promote (add one with `scenario patch --body '{{\"candidate\":{{...}}}}'`)")]
    NoCandidate(String),
    #[error("scenario {scenario} has no stored revision {revision} to roll back to (see `scenario history`)")]
    NoSuchRevision { scenario: String, revision: i64 },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// Another writer changed the scenario since it was read (or since the revision the
    /// caller named in `If-Match` / `--if-revision`).
    #[error(transparent)]
    Conflict(#[from] RevisionConflict),
    #[error(transparent)]
    Store(anyhow::Error),
}

impl From<anyhow::Error> for RolloutError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<RevisionConflict>() {
            Ok(c) => RolloutError::Conflict(c),
            Err(e) => RolloutError::Store(e),
        }
    }
}

/// Fields that describe one stored revision rather than its content.
const REVISION_FIELDS: [&str; 3] = ["revision", "updated_at", "effective_from_window_end"];

/// The content of a document without its revision bookkeeping.
pub fn content_of(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Value::Object(m) = &mut d {
        for f in REVISION_FIELDS {
            m.remove(f);
        }
    }
    d
}

/// Promotion: the candidate merged into the live config and removed.
pub fn promoted(doc: &Value) -> Option<Value> {
    candidate_document(doc)
}

/// The content to store for a rollback of a scenario at `current` revision: revision `to`, or
/// the one before `current`, taken from `history` (the latest record of that revision wins).
pub fn rolled_back(history: &[Value], current: i64, to: Option<i64>) -> Option<Value> {
    let target = to.unwrap_or(current - 1);
    history.iter().rev().find(|d| d.get("revision").and_then(Value::as_i64) == Some(target)).map(content_of)
}

/// Stores `doc` as the next revision after `stored`, taking effect from `effective`; returns
/// the stored document and its config. Every write of a scenario goes through here (CLI, admin
/// API, console), so each one is validated, versioned and recorded in the history alike.
pub async fn store_revision(
    store: &ScenarioStore,
    stored: Option<&Value>,
    mut doc: Value,
    effective: &EffectiveFrom,
    now_ms: i64,
) -> Result<(Value, ScenarioConfig), RolloutError> {
    // Validate first, over the defaults layers as the hosts will: the effective time depends on
    // the new geometry.
    let layers = store.layer_set().await?;
    let (_, checked) = next_revision_over(&layers, stored, doc.clone(), now_ms)?;
    let at = effective.resolve(&checked.config).await?;
    if let Value::Object(m) = &mut doc {
        match at {
            Some(e) => m.insert("effective_from_window_end".into(), Value::from(e)),
            None => m.remove("effective_from_window_end"),
        };
    }
    let (next, checked) = next_revision_over(&layers, stored, doc, now_ms)?;
    let cfg = checked.config;
    // Only over the revision this write was computed from: a concurrent writer's update is
    // never silently lost.
    let based_on = stored.and_then(|d| d.get("revision")).and_then(Value::as_i64).unwrap_or(0);
    store.put(&next, Some(based_on)).await?;
    Ok((next, cfg))
}

/// The caller's precondition (`If-Match`, `--if-revision`): the stored revision must be the one
/// it edited (0: none stored). `None` accepts any.
pub fn expect_revision(stored: Option<&Value>, tenant: &str, scenario: &str, want: Option<i64>) -> Result<(), RevisionConflict> {
    let current = stored.and_then(|d| d.get("revision")).and_then(Value::as_i64).unwrap_or(0);
    match want {
        Some(w) if w != current => Err(RevisionConflict { tenant: tenant.into(), scenario: scenario.into(), based_on: w, current }),
        _ => Ok(()),
    }
}

async fn current(store: &ScenarioStore, tenant: &str, scenario: &str) -> Result<Value, RolloutError> {
    store.get(tenant, scenario).await?.ok_or_else(|| RolloutError::NotFound { tenant: tenant.into(), scenario: scenario.into() })
}

/// `scenario promote`: the candidate becomes live (a new revision without a candidate).
pub async fn promote(
    store: &ScenarioStore,
    tenant: &str,
    scenario: &str,
    effective: &EffectiveFrom,
    if_revision: Option<i64>,
    now_ms: i64,
) -> Result<(Value, ScenarioConfig), RolloutError> {
    let doc = current(store, tenant, scenario).await?;
    expect_revision(Some(&doc), tenant, scenario, if_revision)?;
    let mut next = promoted(&doc).ok_or_else(|| RolloutError::NoCandidate(format!("{tenant}/{scenario}")))?;
    // A marker of the stored revision is not a say-so for this one.
    if let Value::Object(m) = &mut next {
        m.remove(super::weights_guard::REPLACE_WEIGHTS);
    }
    store_revision(store, Some(&doc), next, effective, now_ms).await
}

/// `scenario rollback`: revision `to` (default: the one before the current) stored again as a
/// new revision, so history stays append-only.
pub async fn rollback(
    store: &ScenarioStore,
    tenant: &str,
    scenario: &str,
    to: Option<i64>,
    effective: &EffectiveFrom,
    if_revision: Option<i64>,
    now_ms: i64,
) -> Result<(Value, ScenarioConfig), RolloutError> {
    let doc = current(store, tenant, scenario).await?;
    expect_revision(Some(&doc), tenant, scenario, if_revision)?;
    let revision = doc.get("revision").and_then(Value::as_i64).unwrap_or(0);
    let history = store.history(tenant, scenario).await?;
    let mut next = rolled_back(&history, revision, to)
        .ok_or(RolloutError::NoSuchRevision { scenario: format!("{tenant}/{scenario}"), revision: to.unwrap_or(revision - 1) })?;
    // Returning to an earlier revision's weights is the operator's explicit choice: the marker
    // lets it drop actions added since (and is removed when it drops none).
    super::edit::request_drop_weights(&mut next);
    store_revision(store, Some(&doc), next, effective, now_ms).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollback_takes_the_previous_revision_content() {
        let h = vec![
            json!({"tenant_id": "t", "scenario_id": "s", "revision": 1, "updated_at": 10, "config": {"a": 1}}),
            json!({"tenant_id": "t", "scenario_id": "s", "revision": 2, "updated_at": 20, "effective_from_window_end": 5, "config": {"a": 2}}),
            json!({"tenant_id": "t", "scenario_id": "s", "revision": 3, "updated_at": 30, "config": {"a": 3}}),
        ];
        assert_eq!(rolled_back(&h, 3, None).unwrap(), json!({"tenant_id": "t", "scenario_id": "s", "config": {"a": 2}}));
        assert_eq!(rolled_back(&h, 3, Some(1)).unwrap()["config"]["a"], 1);
        assert!(rolled_back(&h, 3, Some(7)).is_none());
        assert!(rolled_back(&h, 1, None).is_none());
    }

    #[test]
    fn promotion_merges_and_drops_the_candidate() {
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"action_weights": {"click": 2}}}},
            "candidate": {"hot_score": {"action_weights": {"click": 9}}}});
        let p = promoted(&doc).unwrap();
        assert_eq!(p["config"]["realtime_compute"]["hot_score"]["action_weights"]["click"], 9);
        assert!(p.get("candidate").is_none());
        assert!(promoted(&p).is_none());
    }
}
