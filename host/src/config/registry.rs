//! The host's view of every scenario: the last valid config of each, and the last error.
//! A document that fails validation never replaces a valid config (DESIGN §3). Last valid means
//! last valid: a file that became unreadable or a document whose ids cannot be read keeps the
//! scenario it held; only a document that is gone (an explicit delete) removes a scenario, and
//! the removal stays visible in status for [`REMOVED_VISIBLE_MS`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::layers::{LayerId, LayerUpdate, Layered};
use super::tenant::{TenantTable, count_exceeded};
use super::weights_guard::{WeightedActions, dropped, refusal, replaces_weights};
use super::{ScenarioConfig, ScenarioKey, ScenarioStatus, parse_scenario_checked};

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

/// How long a removed scenario stays in status (as removed, with why) before it is forgotten.
pub const REMOVED_VISIBLE_MS: i64 = 3_600_000;

/// A document the store holds but could not read: `origin` (a file path, or the store's own
/// id of a document) and why. The scenario that origin held keeps its last valid config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub origin: String,
    pub error: String,
}

/// Why and when a scenario was removed (kept in status for [`REMOVED_VISIBLE_MS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub at_ms: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct ScenarioEntry {
    /// Where the scenario's document was last read from (a file path, or a MongoDB `_id`).
    pub origin: Option<String>,
    /// Set when the scenario was removed; `applied` is `None` then.
    pub removed: Option<Removal>,
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
    /// The seed's rule (`--require-status-active`): only documents with `status: "active"` run.
    require_status_active: bool,
    /// The defaults layers and each scenario's raw document, resolved over them
    /// (`config::layers`).
    layered: Layered,
}

/// Why a document without `status: "active"` does not run on a host with the seed's rule.
pub const NOT_ACTIVE_BY_SEED_RULE: &str =
    "not run: the document has no `status: \"active\"`, which this host requires (--require-status-active, the seed's rule)";

impl ScenarioRegistry {
    /// A registry that runs only documents with `status: "active"`, as the seed's loader
    /// (`find({'status': 'active'})`) did; by default a missing `status` means active.
    pub fn requiring_status_active(require: bool) -> Self {
        Self { require_status_active: require, ..Self::default() }
    }

    /// Under the seed's rule, a document that says nothing about its status is inactive, with
    /// the reason to report; explicit `"inactive"` needs none.
    fn seed_status_rule(&self, doc: &Value, cfg: &mut ScenarioConfig) -> Option<String> {
        let says_active = doc.get("status").and_then(Value::as_str) == Some("active");
        if !self.require_status_active || says_active || cfg.status != ScenarioStatus::Active {
            return None;
        }
        cfg.status = ScenarioStatus::Inactive;
        Some(NOT_ACTIVE_BY_SEED_RULE.to_string())
    }

    /// Validates a raw document from `origin` (a file path or `mongodb`) and applies it at wall
    /// time `now_ms`.
    pub fn apply_document(&mut self, doc: &Value, origin: &str, now_ms: i64) -> ConfigChange {
        // Validated as resolved over the defaults layers; the raw document is kept so a layer
        // change can resolve it again.
        let resolved = self.layered.remember(doc, origin);
        let doc = &resolved;
        match parse_scenario_checked(doc) {
            Ok(checked) => {
                let mut cfg = checked.config;
                let note = self.seed_status_rule(doc, &mut cfg);
                // Written straight into the store (the seed's admin service does), a partial
                // weight map is refused here against what this host applies.
                if let Some(error) = self.drops_weights(&cfg, doc) {
                    let entry = self.entries.entry(cfg.key.clone()).or_default();
                    if entry.last_error.as_ref() == Some(&error) {
                        return ConfigChange::Unchanged;
                    }
                    entry.last_error = Some(error.clone());
                    return ConfigChange::Rejected { key: Some(cfg.key.clone()), error, origin: origin.to_string() };
                }
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
                entry.last_error = note;
                entry.origin = Some(origin.to_string());
                if entry.applied.as_deref() == Some(&cfg) {
                    return ConfigChange::Unchanged;
                }
                // Logged once per applied change: polls that re-read it are Unchanged above.
                for w in &checked.warnings {
                    tracing::warn!(scenario = %cfg.key, revision = cfg.revision, origin, "scenario document: {w}");
                }
                let cfg = Arc::new(cfg);
                entry.applied = Some(cfg.clone());
                entry.removed = None;
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
                    let entry = self.entries.entry(k.clone()).or_default();
                    entry.last_error = Some(error.clone());
                    entry.origin = Some(origin.to_string());
                }
                ConfigChange::Rejected { key, error, origin: origin.to_string() }
            }
        }
    }

    /// Why `doc` may not replace the applied config: its weight maps drop actions the applied
    /// config weights, without `replace_weights` (config::weights_guard).
    fn drops_weights(&self, cfg: &ScenarioConfig, doc: &Value) -> Option<String> {
        let applied = self.entries.get(&cfg.key)?.applied.as_deref()?;
        let drops = dropped(&WeightedActions::of_config(applied), doc);
        if drops.is_empty() || replaces_weights(doc) {
            return None;
        }
        let errors = refusal(&drops, Some(applied.revision));
        Some(super::ConfigError { scenario: Some(cfg.key.to_string()), errors }.to_string())
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

    /// Removes a scenario (its document was deleted): its state is freed, and the removal
    /// stays visible in status with `reason`.
    pub fn remove(&mut self, key: &ScenarioKey, reason: &str, now_ms: i64) -> ConfigChange {
        self.layered.forget(key);
        let Some(entry) = self.entries.get_mut(key) else { return ConfigChange::Unchanged };
        if entry.applied.take().is_none() {
            // Never ran here (only refused documents): nothing to free or to show.
            self.entries.remove(key);
            return ConfigChange::Unchanged;
        }
        *entry = ScenarioEntry {
            origin: entry.origin.take(),
            removed: Some(Removal { at_ms: now_ms, reason: reason.to_string() }),
            ..ScenarioEntry::default()
        };
        ConfigChange::Removed(key.clone())
    }

    /// Applies a complete set of documents. A scenario whose document is gone is removed; one
    /// whose origin is among `unreadable`, or now holds a document whose ids cannot be read,
    /// keeps its last valid config, with the reason in `last_error`.
    pub fn resync(&mut self, docs: &[(Value, String)], unreadable: &[Unreadable], now_ms: i64) -> Vec<ConfigChange> {
        let mut changes: Vec<ConfigChange> = docs.iter().map(|(d, origin)| self.apply_document(d, origin, now_ms)).collect();
        let present: HashSet<ScenarioKey> = docs
            .iter()
            .filter_map(|(d, _)| Some(ScenarioKey::new(d.get("tenant_id")?.as_str()?, d.get("scenario_id")?.as_str()?)))
            .collect();
        // Origins still holding something, though nothing readable as a scenario: why, by origin.
        let mut held: HashMap<&str, String> = unreadable.iter().map(|u| (u.origin.as_str(), u.error.clone())).collect();
        for (d, origin) in docs {
            let ids = (d.get("tenant_id").and_then(Value::as_str), d.get("scenario_id").and_then(Value::as_str));
            if !matches!(ids, (Some(t), Some(s)) if super::validate::is_valid_id(t) && super::validate::is_valid_id(s)) {
                held.insert(origin.as_str(), "its tenant_id/scenario_id cannot be read".to_string());
            }
        }
        let gone: Vec<ScenarioKey> = self.entries.keys().filter(|k| !present.contains(*k)).cloned().collect();
        for key in gone {
            let Some(entry) = self.entries.get_mut(&key) else { continue };
            if let Some(removal) = &entry.removed {
                if now_ms - removal.at_ms > REMOVED_VISIBLE_MS {
                    self.entries.remove(&key);
                }
                continue;
            }
            let origin = entry.origin.clone().unwrap_or_default();
            if let Some(why) = held.get(origin.as_str()) {
                if entry.applied.is_some() {
                    entry.last_error = Some(format!("{origin} is unreadable ({why}); keeping the last valid config"));
                }
                continue;
            }
            changes.push(self.remove(&key, &format!("its document is gone from {origin}"), now_ms));
        }
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
    fn the_seeds_rule_runs_only_documents_that_say_active() {
        let doc = |status: Value| json!({"tenant_id": "t", "scenario_id": "s", "revision": 1, "status": status});
        let status_of = |reg: &mut ScenarioRegistry, d: &Value| match reg.apply_document(d, "x", 0) {
            ConfigChange::Applied(c) => c.status,
            other => panic!("{other:?}"),
        };
        let mut default = ScenarioRegistry::default();
        assert_eq!(status_of(&mut default, &doc(Value::Null)), ScenarioStatus::Active, "by default a missing status is active");

        let mut seed = ScenarioRegistry::requiring_status_active(true);
        assert_eq!(status_of(&mut seed, &doc(Value::Null)), ScenarioStatus::Inactive);
        let key = ScenarioKey::new("t", "s");
        assert_eq!(seed.get(&key).unwrap().last_error.as_deref(), Some(NOT_ACTIVE_BY_SEED_RULE), "the reason is reported");
        let mut missing = doc(Value::Null);
        missing.as_object_mut().unwrap().remove("status");
        missing["revision"] = 2.into();
        assert_eq!(status_of(&mut seed, &missing), ScenarioStatus::Inactive, "absent, as null");
        let mut active = doc(json!("active"));
        active["revision"] = 3.into();
        assert_eq!(status_of(&mut seed, &active), ScenarioStatus::Active);
        assert_eq!(seed.get(&key).unwrap().last_error, None, "the reason goes with the rule");
        let mut inactive = doc(json!("inactive"));
        inactive["revision"] = 4.into();
        assert_eq!(status_of(&mut seed, &inactive), ScenarioStatus::Inactive);
        assert_eq!(seed.get(&key).unwrap().last_error, None, "an explicit inactive is no error");
    }

    #[test]
    fn a_document_that_drops_weights_is_refused_unless_marked() {
        let mut reg = ScenarioRegistry::default();
        let key = ScenarioKey::new("t", "s");
        let v1 = json!({"tenant_id": "t", "scenario_id": "s", "revision": 1});
        assert!(matches!(reg.apply_document(&v1, "mongodb", 0), ConfigChange::Applied(_)));
        // The seed's `$set {"config.realtime_compute": {...}}` with a partial map.
        let partial = json!({"tenant_id": "t", "scenario_id": "s", "revision": 1,
            "config": {"realtime_compute": {"hot_score": {"action_weights": {"purchase": 15}}}}});
        let ConfigChange::Rejected { error, .. } = reg.apply_document(&partial, "mongodb", 0) else { panic!("partial map applied") };
        assert!(error.contains("hot_score.action_weights: drops actions weighted in revision 1: click, comment"), "{error}");
        assert_eq!(reg.apply_document(&partial, "mongodb", 0), ConfigChange::Unchanged, "a poll re-reading it reports it once");
        assert_eq!(reg.get(&key).unwrap().applied.as_ref().unwrap().hot_score.weight("click"), 2.0, "the last valid config stays");
        assert!(reg.get(&key).unwrap().last_error.as_ref().unwrap().contains("replace_weights"));

        let mut marked = partial.clone();
        marked["replace_weights"] = true.into();
        let ConfigChange::Applied(cfg) = reg.apply_document(&marked, "mongodb", 0) else { panic!("marked map refused") };
        assert_eq!((cfg.hot_score.weight("purchase"), cfg.hot_score.weight("click")), (15.0, 0.0));
        assert!(reg.get(&key).unwrap().last_error.is_none());
        // Now `purchase` alone is the map: listing more actions, or none (the defaults), is fine.
        let defaults = json!({"tenant_id": "t", "scenario_id": "s", "revision": 2});
        assert!(matches!(reg.apply_document(&defaults, "mongodb", 0), ConfigChange::Applied(_)));
    }

    #[test]
    fn resync_removes_missing_scenarios_visibly_for_a_while() {
        let mut reg = ScenarioRegistry::default();
        reg.apply_document(&json!({"tenant_id": "t", "scenario_id": "a"}), "a.json", 0);
        reg.apply_document(&json!({"tenant_id": "t", "scenario_id": "b"}), "b.json", 0);
        let only_a = [(json!({"tenant_id": "t", "scenario_id": "a"}), "a.json".to_string())];
        let changes = reg.resync(&only_a, &[], 10);
        assert_eq!(changes, vec![ConfigChange::Removed(ScenarioKey::new("t", "b"))]);
        let b = reg.get(&ScenarioKey::new("t", "b")).unwrap();
        assert!(b.applied.is_none());
        assert_eq!(b.removed, Some(Removal { at_ms: 10, reason: "its document is gone from b.json".into() }));
        assert!(reg.resync(&only_a, &[], 20).is_empty(), "a removal is reported once");
        reg.resync(&only_a, &[], 20 + REMOVED_VISIBLE_MS);
        assert!(reg.get(&ScenarioKey::new("t", "b")).is_none(), "then forgotten");
    }

    #[test]
    fn an_unreadable_file_or_unreadable_ids_keep_the_scenario() {
        let mut reg = ScenarioRegistry::default();
        reg.apply_document(&json!({"tenant_id": "t", "scenario_id": "a"}), "a.json", 0);
        reg.apply_document(&json!({"tenant_id": "t", "scenario_id": "b", "revision": 3}), "b.json", 0);
        let a = (json!({"tenant_id": "t", "scenario_id": "a"}), "a.json".to_string());
        let broken = Unreadable { origin: "b.json".into(), error: "EOF while parsing".into() };
        assert!(reg.resync(std::slice::from_ref(&a), std::slice::from_ref(&broken), 1).is_empty(), "nothing removed");
        let b = reg.get(&ScenarioKey::new("t", "b")).unwrap();
        assert_eq!(b.applied.as_ref().unwrap().revision, 3);
        assert!(b.last_error.as_ref().unwrap().contains("b.json is unreadable (EOF while parsing)"), "{:?}", b.last_error);

        // Valid JSON whose ids were mangled: the same rule, by origin.
        let mangled = (json!({"tenant_id": 7, "scenario_id": "b"}), "b.json".to_string());
        let changes = reg.resync(&[a.clone(), mangled], &[], 2);
        assert!(changes.iter().all(|c| !matches!(c, ConfigChange::Removed(_))), "{changes:?}");
        assert_eq!(reg.get(&ScenarioKey::new("t", "b")).unwrap().applied.as_ref().unwrap().revision, 3);

        // Fixed: the error clears; deleted: removed.
        reg.resync(&[a.clone(), (json!({"tenant_id": "t", "scenario_id": "b", "revision": 3}), "b.json".into())], &[], 3);
        assert!(reg.get(&ScenarioKey::new("t", "b")).unwrap().last_error.is_none());
        assert_eq!(reg.resync(&[a], &[], 4), vec![ConfigChange::Removed(ScenarioKey::new("t", "b"))]);
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
            &[],
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
