//! The host's view of every scenario: the last valid config of each, and the last error.
//! A document that fails validation never replaces a valid config (DESIGN §3); a full resync
//! removes scenarios whose documents are gone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::layers::{LayerId, LayerUpdate, Layered};
use super::tenant::{TenantTable, count_exceeded};
use super::{ScenarioConfig, ScenarioKey, ScenarioStatus, parse_scenario};

/// What a document did to the registry; the runtime forwards `Applied`/`Removed` to the jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange {
    Applied(Arc<ScenarioConfig>),
    /// Invalid document: the previous valid config (if any) stays in force.
    Rejected {
        key: Option<ScenarioKey>,
        error: String,
        origin: String,
    },
    Removed(ScenarioKey),
    Unchanged,
}

#[derive(Debug, Clone, Default)]
pub struct ScenarioEntry {
    pub applied: Option<Arc<ScenarioConfig>>,
    /// Wall time (epoch ms) the applied config took effect on this host.
    pub applied_at_ms: Option<i64>,
    /// How long the applied change took from its write (`updated_at`) to taking effect here.
    pub propagation_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct ScenarioRegistry {
    entries: BTreeMap<ScenarioKey, ScenarioEntry>,
    /// Per-tenant quotas; `max_scenarios` is enforced here.
    tenants: TenantTable,
    /// Set after the first complete load: only changes after it have a propagation time.
    loaded: bool,
    /// The defaults layers and each scenario's raw document, resolved over them
    /// (`config::layers`).
    layered: Layered,
}

impl ScenarioRegistry {
    /// Validates a raw document from `origin` (a file path or `mongodb`) and applies it at wall
    /// time `now_ms`.
    pub fn apply_document(&mut self, doc: &Value, origin: &str, now_ms: i64) -> ConfigChange {
        // Validated as resolved over the defaults layers; the raw document is kept so a layer
        // change can resolve it again.
        let resolved = self.layered.remember(doc, origin);
        let doc = &resolved;
        match parse_scenario(doc) {
            Ok(cfg) => {
                if let Some(error) = self.over_scenario_quota(&cfg) {
                    let entry = self.entries.entry(cfg.key.clone()).or_default();
                    // Polls re-read the latest document: report and count a refusal once.
                    if entry.last_error.as_ref() == Some(&error) {
                        return ConfigChange::Unchanged;
                    }
                    count_exceeded(&cfg.key.tenant_id, "max_scenarios");
                    entry.last_error = Some(error.clone());
                    return ConfigChange::Rejected { key: Some(cfg.key.clone()), error, origin: origin.to_string() };
                }
                let entry = self.entries.entry(cfg.key.clone()).or_default();
                entry.last_error = None;
                if entry.applied.as_deref() == Some(&cfg) {
                    return ConfigChange::Unchanged;
                }
                let cfg = Arc::new(cfg);
                entry.applied = Some(cfg.clone());
                entry.applied_at_ms = Some(now_ms);
                entry.propagation_ms = if self.loaded { doc.get("updated_at").and_then(Value::as_i64).map(|w| now_ms - w) } else { None };
                ConfigChange::Applied(cfg)
            }
            Err(err) => {
                let key = match (doc.get("tenant_id").and_then(Value::as_str), doc.get("scenario_id").and_then(Value::as_str)) {
                    (Some(t), Some(s)) if super::validate::is_valid_id(t) && super::validate::is_valid_id(s) => {
                        Some(ScenarioKey::new(t, s))
                    }
                    _ => None,
                };
                let error = err.to_string();
                if let Some(k) = &key {
                    self.entries.entry(k.clone()).or_default().last_error = Some(error.clone());
                }
                ConfigChange::Rejected { key, error, origin: origin.to_string() }
            }
        }
    }

    /// A new active scenario beyond its tenant's `max_scenarios` is refused; scenarios already
    /// running keep running when a quota is lowered.
    fn over_scenario_quota(&self, cfg: &ScenarioConfig) -> Option<String> {
        let tenant = &cfg.key.tenant_id;
        let running = |e: &ScenarioEntry| e.applied.as_ref().is_some_and(|c| c.status == ScenarioStatus::Active);
        if cfg.status != ScenarioStatus::Active || self.entries.get(&cfg.key).is_some_and(running) {
            return None;
        }
        let max = self.tenants.get(tenant).max_scenarios;
        let active = self.entries.iter().filter(|(k, e)| k.tenant_id == *tenant && running(e)).count();
        (active >= max).then(|| {
            format!(
                "tenant quota max_scenarios exceeded: tenant {tenant} already runs {active} active scenarios (max {max}); \
                 raise it in the tenant document or deactivate another scenario"
            )
        })
    }

    /// Replaces the tenant quotas (from the tenant documents).
    pub fn set_tenants(&mut self, tenants: TenantTable) {
        self.tenants = tenants;
    }

    pub fn tenants(&self) -> &TenantTable {
        &self.tenants
    }

    pub fn remove(&mut self, key: &ScenarioKey) -> ConfigChange {
        self.layered.forget(key);
        match self.entries.remove(key) {
            Some(e) if e.applied.is_some() => ConfigChange::Removed(key.clone()),
            _ => ConfigChange::Unchanged,
        }
    }

    /// Applies a complete set of documents: every scenario not among them is removed.
    pub fn resync(&mut self, docs: &[(Value, String)], now_ms: i64) -> Vec<ConfigChange> {
        let mut changes: Vec<ConfigChange> = docs.iter().map(|(d, origin)| self.apply_document(d, origin, now_ms)).collect();
        let present: HashSet<ScenarioKey> = docs
            .iter()
            .filter_map(|(d, _)| Some(ScenarioKey::new(d.get("tenant_id")?.as_str()?, d.get("scenario_id")?.as_str()?)))
            .collect();
        let gone: Vec<ScenarioKey> = self.entries.keys().filter(|k| !present.contains(*k)).cloned().collect();
        changes.extend(gone.iter().map(|k| self.remove(k)));
        changes.retain(|c| *c != ConfigChange::Unchanged);
        self.loaded = true;
        changes
    }

    /// Takes defaults layer documents (`full`: every stored one) and applies again every
    /// scenario a changed layer covers; a refused layer keeps its last valid version.
    pub fn apply_layers(&mut self, docs: &[(Value, String)], full: bool, now_ms: i64) -> LayerUpdate {
        let (again, refused) = self.layered.update(docs, full);
        let mut changes: Vec<ConfigChange> = again.iter().map(|(d, origin)| self.apply_document(d, origin, now_ms)).collect();
        changes.retain(|c| *c != ConfigChange::Unchanged);
        LayerUpdate { changes, refused }
    }

    /// The defaults layers in force (each its last valid version).
    pub fn layers(&self) -> &BTreeMap<LayerId, Value> {
        self.layered.layers()
    }

    pub fn get(&self, key: &ScenarioKey) -> Option<&ScenarioEntry> {
        self.entries.get(key)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&ScenarioKey, &ScenarioEntry)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_document_keeps_last_valid_config() {
        let mut reg = ScenarioRegistry::default();
        let good = json!({"tenant_id": "t", "scenario_id": "s", "revision": 1});
        assert!(matches!(reg.apply_document(&good, "a.json", 0), ConfigChange::Applied(_)));
        let bad = json!({"tenant_id": "t", "scenario_id": "s", "revision": 2, "config": {"realtime_compute": {"hot_score": {"decay_lambda": "fast"}}}});
        assert!(matches!(reg.apply_document(&bad, "a.json", 0), ConfigChange::Rejected { .. }));
        let e = reg.get(&ScenarioKey::new("t", "s")).unwrap();
        assert_eq!(e.applied.as_ref().unwrap().revision, 1);
        assert!(e.last_error.as_ref().unwrap().contains("decay_lambda"));
        assert_eq!(reg.apply_document(&good, "a.json", 0), ConfigChange::Unchanged);
    }

    #[test]
    fn scenarios_beyond_the_tenant_quota_are_refused_and_others_unaffected() {
        let mut reg = ScenarioRegistry::default();
        let (tenants, _) = TenantTable::from_documents(&[json!({"tenant_id": "t", "quotas": {"max_scenarios": 1}})]);
        reg.set_tenants(tenants);
        let doc = |t: &str, s: &str| json!({"tenant_id": t, "scenario_id": s});
        assert!(matches!(reg.apply_document(&doc("t", "a"), "x", 0), ConfigChange::Applied(_)));
        let ConfigChange::Rejected { error, .. } = reg.apply_document(&doc("t", "b"), "x", 0) else { panic!("quota not enforced") };
        assert!(error.contains("max_scenarios"), "{error}");
        assert!(reg.get(&ScenarioKey::new("t", "b")).unwrap().last_error.is_some());
        assert!(matches!(reg.apply_document(&doc("other", "b"), "x", 0), ConfigChange::Applied(_)), "other tenants unaffected");
        let mut a2 = doc("t", "a");
        a2["revision"] = 2.into();
        assert!(matches!(reg.apply_document(&a2, "x", 0), ConfigChange::Applied(_)), "a running scenario still takes changes");
        assert!(matches!(
            reg.apply_document(&json!({"tenant_id": "t", "scenario_id": "c", "status": "inactive"}), "x", 0),
            ConfigChange::Applied(_)
        ));
    }

    #[test]
    fn resync_removes_missing_scenarios() {
        let mut reg = ScenarioRegistry::default();
        reg.apply_document(&json!({"tenant_id": "t", "scenario_id": "a"}), "x", 0);
        reg.apply_document(&json!({"tenant_id": "t", "scenario_id": "b"}), "x", 0);
        let changes = reg.resync(&[(json!({"tenant_id": "t", "scenario_id": "a"}), "x".into())], 0);
        assert_eq!(changes, vec![ConfigChange::Removed(ScenarioKey::new("t", "b"))]);
    }

    #[test]
    fn a_layer_change_reaches_the_scenarios_it_covers_and_no_other() {
        let mut reg = ScenarioRegistry::default();
        let doc =
            |t: &str, s: &str, rc: Value| json!({"tenant_id": t, "scenario_id": s, "revision": 4, "config": {"realtime_compute": rc}});
        reg.resync(
            &[
                (doc("t", "a", json!({})), "x".into()),
                (doc("t", "own", json!({"hot_score": {"decay_lambda": 0.7}})), "x".into()),
                (doc("u", "b", json!({})), "x".into()),
            ],
            0,
        );
        let layer = json!({"layer": "tenant", "tenant_id": "t", "revision": 1, "updated_at": 5,
            "config": {"realtime_compute": {"hot_score": {"decay_lambda": 0.4}}}});
        let update = reg.apply_layers(&[(layer, "mongodb defaults tenant".into())], false, 10);
        assert!(update.refused.is_empty(), "{:?}", update.refused);
        let applied: Vec<_> = update
            .changes
            .iter()
            .map(|c| match c {
                ConfigChange::Applied(cfg) => (cfg.key.to_string(), cfg.revision, cfg.hot_score.decay_lambda),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(applied, [("t/a".to_string(), 4, 0.4)], "the scenario's own value wins; other tenants untouched");
        // A scenario written later resolves over the layer too.
        assert!(
            matches!(reg.apply_document(&doc("t", "c", json!({})), "x", 20), ConfigChange::Applied(c) if c.hot_score.decay_lambda == 0.4)
        );
        // Deleting the layer (a full read without it) brings the builtin default back.
        let update = reg.apply_layers(&[], true, 30);
        assert_eq!(update.changes.len(), 2);
        assert_eq!(reg.get(&ScenarioKey::new("t", "a")).unwrap().applied.as_ref().unwrap().hot_score.decay_lambda, 0.1);
        assert!(reg.layers().is_empty());
    }
}
