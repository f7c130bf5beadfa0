//! Scenario documents through the store: get, list, replace, deep-merge patch, delete, and the
//! rollout operations (history, promote, rollback). Every write goes through
//! `config::history::store_revision`: validated, `revision` bumped, the event-time switch
//! recorded, the revision appended to the history, whoever calls it. With a plugin namespace
//! (the admin API), a write whose plugin references leave the tenant's namespace (its own and
//! shared modules) is refused before anything is stored.

use serde_json::Value;

use super::AdminError;
use crate::config::edit::{deep_merge, new_document, write_warnings};
use crate::config::history;
use crate::config::layers::next_revision_over;
use crate::config::store::ScenarioStore;
use crate::config::switch::EffectiveFrom;
use crate::config::tenant::{TenantQuotas, parse_tenant};
use crate::config::validate::is_valid_id;
use crate::config::{FieldError, ScenarioConfig, parse_scenario};

pub struct ScenarioService {
    store: ScenarioStore,
    /// Where plugin references are checked against the tenant's namespace; `None` (the CLI,
    /// run by operators): the hosts still refuse them when they resolve.
    plugins: Option<std::sync::Arc<super::PluginService>>,
}

/// A document as it was (or would be) stored, with its validated config.
#[derive(Debug)]
pub struct StoredScenario {
    pub document: Value,
    pub config: ScenarioConfig,
    /// What the writer should hear without being refused: platform fields, weights a
    /// `replace_weights` marker dropped (path and message each).
    pub warnings: Vec<FieldError>,
}

fn ids(doc: &Value) -> (Option<&str>, Option<&str>) {
    (doc.get("tenant_id").and_then(Value::as_str), doc.get("scenario_id").and_then(Value::as_str))
}

/// `tenant` and `scenario` must be ids a document can carry (`[A-Za-z0-9_-]{1,64}`).
pub fn check_ids(tenant: &str, scenario: Option<&str>) -> Result<(), AdminError> {
    if !is_valid_id(tenant) {
        return Err(AdminError::rejected("tenant_id", "must match [A-Za-z0-9_-]{1,64}"));
    }
    if scenario.is_some_and(|s| !is_valid_id(s)) {
        return Err(AdminError::rejected("scenario_id", "must match [A-Za-z0-9_-]{1,64}"));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl ScenarioService {
    pub fn new(store: ScenarioStore) -> Self {
        Self { store, plugins: None }
    }

    /// Refuses writes that reference plugin modules outside the scenario's tenant namespace.
    pub fn with_plugin_namespace(mut self, plugins: std::sync::Arc<super::PluginService>) -> Self {
        self.plugins = Some(plugins);
        self
    }

    async fn check_plugins(&self, tenant: &str, doc: &Value) -> Result<(), AdminError> {
        match &self.plugins {
            Some(p) => p.check_references(tenant, doc).await,
            None => Ok(()),
        }
    }

    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// The underlying store (tenant documents live beside the scenarios).
    pub fn store(&self) -> &ScenarioStore {
        &self.store
    }

    /// Every document, or one tenant's, ordered by tenant then scenario.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<Value>, AdminError> {
        let mut docs: Vec<Value> = self.store.list().await?.into_iter().filter(|d| tenant.is_none_or(|t| ids(d).0 == Some(t))).collect();
        docs.sort_by(|a, b| ids(a).cmp(&ids(b)));
        Ok(docs)
    }

    pub async fn get(&self, tenant: &str, scenario: &str) -> Result<Value, AdminError> {
        check_ids(tenant, Some(scenario))?;
        self.store
            .get(tenant, scenario)
            .await?
            .ok_or_else(|| AdminError::ScenarioNotFound { tenant: tenant.into(), scenario: scenario.into() })
    }

    /// The next version of `tenant/scenario` if `doc` replaced it: ids in the body must match
    /// the address (missing ones are filled in). Nothing is stored.
    pub async fn prepare_put(&self, tenant: &str, scenario: &str, doc: Value) -> Result<StoredScenario, AdminError> {
        let doc = addressed(tenant, scenario, doc)?;
        let stored = self.store.get(tenant, scenario).await?;
        let layers = self.store.layer_set().await?;
        let (document, checked) = next_revision_over(&layers, stored.as_ref(), doc, now_ms())?;
        self.check_plugins(tenant, &document).await?;
        Ok(StoredScenario { document, config: checked.config, warnings: checked.warnings })
    }

    /// Replaces (or creates) a scenario with `doc`, taking effect from `effective`; with
    /// `if_revision`, only if that is the stored revision (0: none).
    pub async fn put(
        &self,
        tenant: &str,
        scenario: &str,
        doc: Value,
        effective: &EffectiveFrom,
        if_revision: Option<i64>,
    ) -> Result<StoredScenario, AdminError> {
        let doc = addressed(tenant, scenario, doc)?;
        let stored = self.store.get(tenant, scenario).await?;
        history::expect_revision(stored.as_ref(), tenant, scenario, if_revision).map_err(conflict)?;
        self.check_plugins(tenant, &doc).await?;
        self.store_revision(stored.as_ref(), doc, effective).await
    }

    async fn store_revision(&self, stored: Option<&Value>, doc: Value, effective: &EffectiveFrom) -> Result<StoredScenario, AdminError> {
        let (document, config) = history::store_revision(&self.store, stored, doc, effective, now_ms()).await?;
        let warnings = write_warnings(stored, &document);
        Ok(StoredScenario { document, config, warnings })
    }

    /// Replaces a scenario with a complete document that names its own ids (`scenario set`).
    pub async fn put_document(
        &self,
        doc: Value,
        effective: &EffectiveFrom,
        if_revision: Option<i64>,
    ) -> Result<StoredScenario, AdminError> {
        let cfg = parse_scenario(&doc)?;
        let (tenant, scenario) = (cfg.key.tenant_id.to_string(), cfg.key.scenario_id.to_string());
        self.put(&tenant, &scenario, doc, effective, if_revision).await
    }

    /// The next version of a scenario after deep-merging `patch` into it (the seed's admin API
    /// semantics; `null` removes a key). With `create`, a missing scenario starts from defaults.
    /// Nothing is stored.
    pub async fn prepare_patch(&self, tenant: &str, scenario: &str, patch: &Value, create: bool) -> Result<StoredScenario, AdminError> {
        let (stored, doc) = self.merged(tenant, scenario, patch, create).await?;
        let layers = self.store.layer_set().await?;
        let (document, checked) = next_revision_over(&layers, stored.as_ref(), doc, now_ms())?;
        self.check_plugins(tenant, &document).await?;
        Ok(StoredScenario { document, config: checked.config, warnings: checked.warnings })
    }

    pub async fn patch(
        &self,
        tenant: &str,
        scenario: &str,
        patch: &Value,
        create: bool,
        effective: &EffectiveFrom,
        if_revision: Option<i64>,
    ) -> Result<StoredScenario, AdminError> {
        let (stored, doc) = self.merged(tenant, scenario, patch, create).await?;
        history::expect_revision(stored.as_ref(), tenant, scenario, if_revision).map_err(conflict)?;
        self.check_plugins(tenant, &doc).await?;
        self.store_revision(stored.as_ref(), doc, effective).await
    }

    /// The stored document (if any) and the result of merging `patch` into it.
    async fn merged(&self, tenant: &str, scenario: &str, patch: &Value, create: bool) -> Result<(Option<Value>, Value), AdminError> {
        check_ids(tenant, Some(scenario))?;
        if !patch.is_object() {
            return Err(AdminError::rejected("", "a patch must be a JSON object"));
        }
        let stored = self.store.get(tenant, scenario).await?;
        let mut doc = match (&stored, create) {
            (Some(d), _) => {
                // The stored revision's `replace_weights` was its writer's say-so, not this
                // patch's: only the patch (or --drop-weights) can set it again.
                let mut d = d.clone();
                if let Value::Object(m) = &mut d {
                    m.remove(crate::config::weights_guard::REPLACE_WEIGHTS);
                }
                d
            }
            (None, true) => new_document(tenant, scenario),
            (None, false) => return Err(AdminError::ScenarioNotFound { tenant: tenant.into(), scenario: scenario.into() }),
        };
        deep_merge(&mut doc, patch);
        // The ids are part of the address, not of the patch.
        doc["tenant_id"] = Value::from(tenant);
        doc["scenario_id"] = Value::from(scenario);
        Ok((stored, doc))
    }

    /// The shadow candidate becomes live (a new revision without a candidate).
    pub async fn promote(
        &self,
        tenant: &str,
        scenario: &str,
        effective: &EffectiveFrom,
        if_revision: Option<i64>,
    ) -> Result<StoredScenario, AdminError> {
        check_ids(tenant, Some(scenario))?;
        // The candidate's reference becomes the live one: it must still be in the namespace.
        if self.plugins.is_some()
            && let Some(stored) = self.store.get(tenant, scenario).await?
        {
            self.check_plugins(tenant, &stored).await?;
        }
        let (document, config) = history::promote(&self.store, tenant, scenario, effective, if_revision, now_ms()).await?;
        Ok(StoredScenario { warnings: write_warnings(None, &document), document, config })
    }

    /// Revision `to` (default: the one before the current) stored again as a new revision.
    pub async fn rollback(
        &self,
        tenant: &str,
        scenario: &str,
        to: Option<i64>,
        effective: &EffectiveFrom,
        if_revision: Option<i64>,
    ) -> Result<StoredScenario, AdminError> {
        check_ids(tenant, Some(scenario))?;
        // The revision restored may reference a module the tenant may no longer use.
        if self.plugins.is_some()
            && let Some(stored) = self.store.get(tenant, scenario).await?
        {
            let current = stored.get("revision").and_then(Value::as_i64).unwrap_or(0);
            let past = self.store.history(tenant, scenario).await?;
            if let Some(target) = history::rolled_back(&past, current, to) {
                self.check_plugins(tenant, &target).await?;
            }
        }
        let (document, config) = history::rollback(&self.store, tenant, scenario, to, effective, if_revision, now_ms()).await?;
        Ok(StoredScenario { warnings: write_warnings(None, &document), document, config })
    }

    /// Every stored revision of a scenario, oldest first.
    pub async fn history(&self, tenant: &str, scenario: &str) -> Result<Vec<Value>, AdminError> {
        check_ids(tenant, Some(scenario))?;
        let history = self.store.history(tenant, scenario).await?;
        if history.is_empty() {
            return Err(AdminError::ScenarioNotFound { tenant: tenant.into(), scenario: scenario.into() });
        }
        Ok(history)
    }

    /// The tenant's quotas from its tenant document; a missing or invalid document gives the
    /// defaults, as on the hosts.
    pub async fn tenant_quotas(&self, tenant: &str) -> Result<TenantQuotas, AdminError> {
        check_ids(tenant, None)?;
        let doc = self.store.tenant(tenant).await?;
        Ok(doc.and_then(|d| parse_tenant(&d).ok()).map(|(_, q)| q).unwrap_or_default())
    }

    pub async fn delete(&self, tenant: &str, scenario: &str) -> Result<(), AdminError> {
        check_ids(tenant, Some(scenario))?;
        if self.store.delete(tenant, scenario).await? {
            Ok(())
        } else {
            Err(AdminError::ScenarioNotFound { tenant: tenant.into(), scenario: scenario.into() })
        }
    }
}

fn conflict(c: crate::config::store::RevisionConflict) -> AdminError {
    AdminError::Conflict(c.to_string())
}

/// `doc` addressed to `tenant/scenario`: ids in the body must match the address (missing ones
/// are filled in).
fn addressed(tenant: &str, scenario: &str, mut doc: Value) -> Result<Value, AdminError> {
    {
        check_ids(tenant, Some(scenario))?;
        let Value::Object(m) = &mut doc else { return Err(AdminError::rejected("", "a scenario document must be a JSON object")) };
        for (field, want) in [("tenant_id", tenant), ("scenario_id", scenario)] {
            match m.get(field) {
                None | Some(Value::Null) => {
                    m.insert(field.into(), want.into());
                }
                Some(v) if v.as_str() == Some(want) => {}
                Some(_) => return Err(AdminError::rejected(field, format!("must equal {want:?}, the {field} being written"))),
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> (tempfile::TempDir, ScenarioService) {
        let dir = tempfile::tempdir().unwrap();
        let svc = ScenarioService::new(ScenarioStore::Dir(dir.path().to_path_buf()));
        (dir, svc)
    }

    #[tokio::test]
    async fn put_patch_delete_bump_revisions_and_keep_ids_from_the_address() {
        let (_dir, svc) = service();
        let first = svc.put("t", "s", json!({"status": "active"}), &EffectiveFrom::Immediately, Some(0)).await.unwrap();
        assert_eq!(first.config.revision, 1);
        let patched = svc
            .patch(
                "t",
                "s",
                &json!({"tenant_id": "other", "config": {"realtime_compute": {"hot_score": {"top_n": 5}}}}),
                false,
                &EffectiveFrom::Immediately,
                Some(1),
            )
            .await
            .unwrap();
        assert_eq!((patched.config.revision, patched.config.hot_score.top_n), (2, 5));
        // An editor who read revision 1 is told the scenario moved on, and nothing is stored.
        let stale = svc.patch("t", "s", &json!({"status": "inactive"}), false, &EffectiveFrom::Immediately, Some(1)).await.unwrap_err();
        assert!(matches!(&stale, AdminError::Conflict(m) if m.contains("revision 2")), "{stale}");
        assert!(matches!(svc.promote("t", "s", &EffectiveFrom::Immediately, Some(1)).await, Err(AdminError::Conflict(_))));
        assert!(matches!(svc.rollback("t", "s", None, &EffectiveFrom::Immediately, Some(1)).await, Err(AdminError::Conflict(_))));
        assert_eq!(svc.get("t", "s").await.unwrap()["revision"], 2);
        assert_eq!(svc.get("t", "s").await.unwrap()["tenant_id"], "t");
        assert_eq!(svc.list(Some("t")).await.unwrap().len(), 1);
        assert!(svc.list(Some("other")).await.unwrap().is_empty());
        svc.delete("t", "s").await.unwrap();
        assert!(matches!(svc.get("t", "s").await, Err(AdminError::ScenarioNotFound { .. })));
    }

    #[tokio::test]
    async fn writes_that_drop_weights_are_refused_unless_asked_for_and_the_marker_does_not_carry_over() {
        let (_dir, svc) = service();
        let now = &EffectiveFrom::Immediately;
        let weights = |w: Value| json!({"config": {"realtime_compute": {"hot_score": {"action_weights": w}}}});
        let first = svc.put("t", "s", json!({"owner": "team"}), now, None).await.unwrap();
        assert!(first.warnings.iter().any(|w| w.path == "owner" && w.rule.contains("platform field")), "{:?}", first.warnings);
        // A full document whose map lists only purchase, over the defaults.
        let err = svc.put("t", "s", weights(json!({"purchase": 15})), now, None).await.unwrap_err();
        assert_eq!(err.field_errors()[0].path, "config.realtime_compute.hot_score.action_weights");
        assert!(err.to_string().contains("revision 1: click, comment, favorite, impression, like, share, view"), "{err}");
        assert!(matches!(svc.prepare_put("t", "s", weights(json!({"purchase": 15}))).await, Err(AdminError::Invalid(_))), "dry runs too");
        assert_eq!(svc.get("t", "s").await.unwrap()["revision"], 1, "nothing stored");

        // Said so (what --drop-weights / ?drop_weights=true do): stored with the marker, warned.
        let mut asked = weights(json!({"purchase": 15, "click": 2}));
        crate::config::edit::request_drop_weights(&mut asked);
        let stored = svc.put("t", "s", asked, now, None).await.unwrap();
        assert_eq!(stored.document["replace_weights"], true);
        assert!(stored.warnings.iter().any(|w| w.rule.contains("no longer weights comment")), "{:?}", stored.warnings);

        // A later patch does not inherit the marker: dropping click again is refused ...
        let drop_click = weights(json!({"click": null}));
        assert!(matches!(svc.patch("t", "s", &drop_click, false, now, None).await, Err(AdminError::Invalid(_))));
        // ... and a patch that drops nothing is stored without it.
        let raised = svc.patch("t", "s", &weights(json!({"purchase": 20})), false, now, None).await.unwrap();
        assert!(raised.document.get("replace_weights").is_none());
        assert!(raised.warnings.is_empty(), "{:?}", raised.warnings);
        // Weight 0 keeps an action listed: no refusal.
        assert!(svc.patch("t", "s", &weights(json!({"click": 0})), false, now, None).await.is_ok());
        // A rollback to revision 1 (the defaults) is the operator's explicit choice.
        let back = svc.rollback("t", "s", Some(1), now, None).await.unwrap();
        assert_eq!(back.config.hot_score.weight("view"), 1.0);
    }

    #[tokio::test]
    async fn misspelt_fields_are_refused_on_writes() {
        let (_dir, svc) = service();
        let err = svc
            .patch(
                "t",
                "s",
                &json!({"config": {"realtime_compute": {"hot_score": {"decay_lamda": 0.5}}}}),
                true,
                &EffectiveFrom::Immediately,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.field_errors()[0].to_string(),
            "config.realtime_compute.hot_score.decay_lamda: unknown field; did you mean \"decay_lambda\"?"
        );
    }

    #[tokio::test]
    async fn invalid_writes_name_the_field_and_store_nothing() {
        let (_dir, svc) = service();
        let err = svc.put("t", "s", json!({"scenario_id": "x"}), &EffectiveFrom::Immediately, None).await.unwrap_err();
        assert_eq!(err.field_errors()[0].path, "scenario_id");
        let err = svc
            .patch("t", "s", &json!({"config": {"realtime_compute": {"hot_score": {"top_n": 0}}}}), true, &EffectiveFrom::Immediately, None)
            .await
            .unwrap_err();
        assert_eq!(err.field_errors()[0].path, "config.realtime_compute.hot_score.top_n");
        assert!(matches!(svc.get("t", "s").await, Err(AdminError::ScenarioNotFound { .. })));
        assert!(matches!(svc.get("t/..", "s").await, Err(AdminError::Rejected(_))));
    }
}
