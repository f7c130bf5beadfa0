//! Per-tenant quotas (docs/rollout.md): how many scenarios a tenant may run, how large its
//! plugin modules may be, and the CPU budget per window and memory per instance of its plugins.
//! Set in a tenant document (`tenants` collection, or `<scenarios-dir>/tenants/<tenant>.json`);
//! every missing field, and every tenant without a document, takes the default. Exceeding a
//! quota is reported in the scenario's status and counted in
//! `rtscore_quota_exceeded_total{tenant,quota}`; it never affects another tenant.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::plugin_limits::{DEFAULT_MAX_MODULE_BYTES, MAX_MODULE_BYTES, SandboxLimits};
use super::validate::is_valid_id;
use super::{ConfigError, FieldError};

/// One tenant's quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantQuotas {
    /// Active scenarios the tenant may run; further ones are refused.
    pub max_scenarios: usize,
    /// Largest plugin module the tenant's scenarios may reference.
    pub max_module_bytes: usize,
    /// CPU budget of one plugin call (one window's batch), in ms.
    pub cpu_ms_per_window: u64,
    /// Wall time all of the tenant's plugin calls (live, shadow, fallback, instantiation) may
    /// take per minute, in ms; beyond it the built-in formula scores (shadow stops at 80%).
    pub cpu_ms_per_minute: u64,
    /// Linear memory cap of each plugin instance.
    pub max_instance_memory_bytes: usize,
    /// Linear memory of all the tenant's plugin instances together (live, shadow, fallback).
    pub max_plugin_memory_bytes: usize,
    /// Plugin uploads through the admin API per sliding minute; further ones get `429`.
    pub plugin_uploads_per_minute: u32,
    /// Plugin compiles of this tenant running at once; a further upload gets `429`.
    pub concurrent_compiles: usize,
    /// Distinct items one scenario's hot-score windows may hold (`quota_items`).
    pub max_items_per_scenario: usize,
    /// Event ids one scenario may remember for duplicate suppression (`quota_event_ids`).
    pub max_event_ids_per_scenario: usize,
    /// Users one scenario's profiles may hold (`quota_users`).
    pub max_users_per_scenario: usize,
    /// Bytes of all the tenant's window and profile state (`quota_state_bytes`).
    pub max_state_bytes: usize,
}

impl Default for TenantQuotas {
    fn default() -> Self {
        let sandbox = SandboxLimits::default();
        Self {
            max_scenarios: 100,
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            cpu_ms_per_window: sandbox.call_budget.as_millis() as u64,
            cpu_ms_per_minute: 3_000,
            max_instance_memory_bytes: sandbox.memory_bytes,
            plugin_uploads_per_minute: 10,
            concurrent_compiles: 1,
            max_plugin_memory_bytes: 512 << 20,
            max_items_per_scenario: 2_000_000,
            max_event_ids_per_scenario: 5_000_000,
            max_users_per_scenario: 2_000_000,
            max_state_bytes: 2 << 30,
        }
    }
}

impl TenantQuotas {
    /// The sandbox limits of this tenant's plugin instances: the host's, with the tenant's CPU
    /// budget (for the whole window: no per-item allowance) and memory cap.
    pub fn sandbox_limits(&self, host: &SandboxLimits) -> SandboxLimits {
        let d = Self::default();
        // Only the sandbox's own fields count: an upload quota leaves the host's limits alone.
        if (self.cpu_ms_per_window, self.max_instance_memory_bytes) == (d.cpu_ms_per_window, d.max_instance_memory_bytes) {
            return host.clone();
        }
        SandboxLimits {
            call_budget: Duration::from_millis(self.cpu_ms_per_window),
            budget_per_item: Duration::ZERO,
            memory_bytes: self.max_instance_memory_bytes,
            ..host.clone()
        }
    }
}

/// Counts a refusal for the `rtscore_quota_exceeded_total{tenant,quota}` metric.
pub fn count_exceeded(tenant: &str, quota: &'static str) {
    metrics::counter!("rtscore_quota_exceeded_total", "tenant" => tenant.to_string(), "quota" => quota).increment(1);
}

/// Parses a tenant document: `{tenant_id, quotas: {max_scenarios, max_module_bytes,
/// cpu_ms_per_window, cpu_ms_per_minute, max_instance_memory_bytes, max_plugin_memory_bytes,
/// plugin_uploads_per_minute,
/// concurrent_compiles, max_items_per_scenario, max_event_ids_per_scenario,
/// max_users_per_scenario, max_state_bytes}}`.
pub fn parse_tenant(doc: &Value) -> Result<(String, TenantQuotas), ConfigError> {
    let mut errors = Vec::new();
    let tenant = match doc.get("tenant_id").and_then(Value::as_str) {
        Some(t) if is_valid_id(t) => Some(t.to_string()),
        _ => {
            errors.push(FieldError { path: "tenant_id".into(), rule: "is required and must match [A-Za-z0-9_-]{1,64}".into() });
            None
        }
    };
    let d = TenantQuotas::default();
    let q = doc.get("quotas");
    let mut field = |name: &str, default: u64, max: u64| -> u64 {
        match q.and_then(|q| q.get(name)) {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_u64() {
                Some(x) if (1..=max).contains(&x) => x,
                _ => {
                    errors.push(FieldError { path: format!("quotas.{name}"), rule: format!("must be an integer in [1, {max}], got {v}") });
                    default
                }
            },
        }
    };
    let quotas = TenantQuotas {
        max_scenarios: field("max_scenarios", d.max_scenarios as u64, 100_000) as usize,
        max_module_bytes: field("max_module_bytes", d.max_module_bytes as u64, MAX_MODULE_BYTES as u64) as usize,
        cpu_ms_per_window: field("cpu_ms_per_window", d.cpu_ms_per_window, 60_000),
        cpu_ms_per_minute: field("cpu_ms_per_minute", d.cpu_ms_per_minute, 60_000),
        max_instance_memory_bytes: field("max_instance_memory_bytes", d.max_instance_memory_bytes as u64, 4 << 30) as usize,
        plugin_uploads_per_minute: field("plugin_uploads_per_minute", d.plugin_uploads_per_minute.into(), 10_000) as u32,
        concurrent_compiles: field("concurrent_compiles", d.concurrent_compiles as u64, 64) as usize,
        max_plugin_memory_bytes: field("max_plugin_memory_bytes", d.max_plugin_memory_bytes as u64, 64 << 30) as usize,
        max_items_per_scenario: field("max_items_per_scenario", d.max_items_per_scenario as u64, 1 << 32) as usize,
        max_event_ids_per_scenario: field("max_event_ids_per_scenario", d.max_event_ids_per_scenario as u64, 1 << 32) as usize,
        max_users_per_scenario: field("max_users_per_scenario", d.max_users_per_scenario as u64, 1 << 32) as usize,
        max_state_bytes: field("max_state_bytes", d.max_state_bytes as u64, 1 << 40) as usize,
    };
    match tenant {
        Some(t) if errors.is_empty() => Ok((t, quotas)),
        t => Err(ConfigError { scenario: t.map(|t| format!("tenant {t}")), errors }),
    }
}

/// Every tenant's quotas; tenants without a (valid) document get the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantTable {
    tenants: HashMap<String, TenantQuotas>,
    default: TenantQuotas,
}

impl TenantTable {
    /// Builds the table from tenant documents; invalid ones are returned as errors and their
    /// tenant keeps the defaults.
    pub fn from_documents(docs: &[Value]) -> (Self, Vec<ConfigError>) {
        let mut table = Self::default();
        let mut errors = Vec::new();
        for d in docs {
            match parse_tenant(d) {
                Ok((t, q)) => {
                    table.tenants.insert(t, q);
                }
                Err(e) => errors.push(e),
            }
        }
        (table, errors)
    }

    /// The table after reading the tenant documents again, keeping the last valid quotas: a
    /// tenant whose document is now invalid keeps its previous quotas, and when some tenant
    /// document could not be read at all (`incomplete`: its tenant is unknown), every tenant
    /// missing from `docs` keeps its previous quotas too. Only a removed document returns a
    /// tenant to the defaults.
    pub fn updated(&self, docs: &[Value], incomplete: bool) -> (Self, Vec<ConfigError>) {
        let (mut next, errors) = Self::from_documents(docs);
        let invalid = docs.iter().filter(|d| parse_tenant(d).is_err()).filter_map(|d| d.get("tenant_id")?.as_str());
        let kept: Vec<&str> = if incomplete {
            self.documented().filter(|t| !next.tenants.contains_key(*t)).collect()
        } else {
            invalid.filter(|t| self.tenants.contains_key(*t)).collect()
        };
        for t in kept {
            if let Some(q) = self.tenants.get(t) {
                next.tenants.insert(t.to_string(), q.clone());
            }
        }
        (next, errors)
    }

    pub fn get(&self, tenant: &str) -> &TenantQuotas {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// Tenants with a document of their own.
    pub fn documented(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_fields_and_tenants_take_defaults() {
        let (t, errors) = TenantTable::from_documents(&[
            json!({"tenant_id": "small", "quotas": {"max_scenarios": 2, "cpu_ms_per_window": 5}}),
            json!({"tenant_id": "uploads", "quotas": {"plugin_uploads_per_minute": 2, "concurrent_compiles": 3}}),
            json!({"tenant_id": "bad", "quotas": {"max_scenarios": -1}}),
        ]);
        assert_eq!(t.get("small").max_scenarios, 2);
        assert_eq!(t.get("small").max_module_bytes, TenantQuotas::default().max_module_bytes);
        assert_eq!(t.get("other"), &TenantQuotas::default());
        assert_eq!(t.get("bad"), &TenantQuotas::default());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("quotas.max_scenarios"), "{}", errors[0]);

        assert_eq!((t.get("uploads").plugin_uploads_per_minute, t.get("uploads").concurrent_compiles), (2, 3));
        let host = SandboxLimits::default();
        assert_eq!(TenantQuotas::default().sandbox_limits(&host), host);
        assert_eq!(t.get("uploads").sandbox_limits(&host), host, "upload quotas leave the sandbox alone");
        let small = t.get("small").sandbox_limits(&host);
        assert_eq!((small.call_budget, small.budget_per_item), (Duration::from_millis(5), Duration::ZERO));
    }

    #[test]
    fn an_invalid_or_unreadable_tenant_document_keeps_the_last_valid_quotas() {
        let doc = |t: &str, max: i64| json!({"tenant_id": t, "quotas": {"max_scenarios": max}});
        let (before, _) = TenantTable::from_documents(&[doc("a", 2), doc("b", 3)]);
        let (after, errors) = before.updated(&[doc("a", -1), doc("b", 3)], false);
        assert_eq!((after.get("a").max_scenarios, errors.len()), (2, 1), "invalid: the previous quotas stay");
        let (after, _) = before.updated(&[doc("a", 2)], true);
        assert_eq!(after.get("b").max_scenarios, 3, "an unreadable file may be b's: b keeps its quotas");
        let (after, _) = before.updated(&[doc("a", 2)], false);
        assert_eq!(after.get("b"), &TenantQuotas::default(), "a removed document returns b to the defaults");
    }
}
