//! Everything that can go wrong with a plugin, from finding its module to checking its scores.

use thiserror::Error;

/// A plugin failure. Each one is contained to its scenario: the caller falls back to the last
/// good module or the built-in formula and reports the error (see `ScenarioScorer`).
#[derive(Debug, Clone, Error, PartialEq)]
pub enum PluginError {
    #[error("plugin module {reference} not found in the registry; publish it as {reference}.wasm")]
    NotFound { reference: String },

    /// A scenario's reference outside its tenant's namespace: not among the tenant's own
    /// modules nor the shared ones. Says nothing of whether another tenant has such a module.
    #[error("no module `{reference}` owned by tenant `{tenant}` or shared; publish it for this tenant or ask an admin to share it")]
    NotVisible { reference: String, tenant: String },

    #[error(
        "plugin module {reference} has sha256 {actual}, but the scenario pins {expected}; publish the pinned module or update the reference"
    )]
    HashMismatch { reference: String, expected: String, actual: String },

    #[error("invalid plugin {field} {value:?}: {rule}")]
    InvalidName { field: &'static str, value: String, rule: &'static str },

    #[error("plugin registry: {0}")]
    Registry(String),

    #[error("plugin module does not compile as an rtscore:scoring component: {0}")]
    Compile(String),

    #[error("plugin module cannot be instantiated in the sandbox: {0}")]
    Instantiate(String),

    /// A module of another world than the section referencing it expects.
    #[error(
        "plugin module {reference} implements world `{found}`, but {section} needs world `{expected}`; reference it from {found_section}"
    )]
    WrongWorld { reference: String, expected: &'static str, found: &'static str, section: &'static str, found_section: &'static str },

    /// A metrics or profile plugin's result broke the contract (a bad name, an unknown item,
    /// a non-finite value, too many values).
    #[error("plugin returned a malformed result: {0}")]
    BadOutput(String),

    #[error("plugin rejected its params: {0}")]
    Configure(String),

    #[error("plugin trapped: {0}")]
    Trap(String),

    #[error("plugin exceeded its CPU budget of {budget_ms} ms for one call")]
    BudgetExhausted { budget_ms: u64 },

    #[error("plugin exceeded its memory cap of {cap_bytes} bytes")]
    MemoryExhausted { cap_bytes: usize },

    #[error("the tenant's plugin instances together would exceed {cap_bytes} bytes of memory (quotas.max_plugin_memory_bytes)")]
    TenantMemory { cap_bytes: usize },

    #[error("plugin returned {got} scores for {expected} items")]
    WrongLength { expected: usize, got: usize },

    #[error("plugin returned a non-finite score {value} for item {}", item_label(*index, item.as_deref()))]
    NonFinite {
        index: usize,
        /// The item's id, when known (always once the pipeline has reported it).
        item: Option<String>,
        value: f64,
    },

    #[error("plugin returned an error: {0}")]
    Guest(String),

    #[error("tenant quota {quota} exceeded: {detail}; raise it in the tenant document (docs/rollout.md)")]
    QuotaExceeded { quota: &'static str, detail: String },

    #[error(
        "the tenant's plugins used {used_ms} ms of their {budget_ms} ms CPU budget this minute (quotas.cpu_ms_per_minute); scored by the built-in formula until the next minute"
    )]
    TenantCpu { used_ms: u64, budget_ms: u64 },

    #[error(
        "plugin used {used_ms} ms of its {budget_ms} ms per-call CPU budget, {calls} calls in a row; a plugin that needs its whole budget is a plugin about to fail"
    )]
    NearBudget { used_ms: u64, budget_ms: u64, calls: u32 },

    #[error("plugin instance is being re-created after a failure, off the event path; the fallback scores meanwhile")]
    Restarting,

    #[error(
        "plugin {label} is quarantined after {failures} consecutive failures (last: {reason}); it stays off until its reference or module changes"
    )]
    Quarantined { label: String, failures: u32, reason: String },
}

/// `#3 "item-7"`, or `#3` when the id is not known.
fn item_label(index: usize, item: Option<&str>) -> String {
    match item {
        Some(id) => format!("{id:?} (#{index})"),
        None => format!("#{index}"),
    }
}

impl PluginError {
    /// Names the item of a non-finite score by its id, given the batch's ids in item order.
    pub fn name_item<'a>(&mut self, id_of: impl FnOnce(usize) -> Option<&'a str>) {
        if let PluginError::NonFinite { index, item: item @ None, .. } = self {
            *item = id_of(*index).map(str::to_string);
        }
    }

    /// A short stable name for metrics labels and status (`kind` of
    /// `rtscore_plugin_failures_total`).
    pub fn kind(&self) -> &'static str {
        match self {
            // One kind for both: metrics must not tell a tenant which modules exist elsewhere.
            PluginError::NotFound { .. } | PluginError::NotVisible { .. } => "not_found",
            PluginError::HashMismatch { .. } => "hash_mismatch",
            PluginError::InvalidName { .. } => "invalid_name",
            PluginError::Registry(_) => "registry",
            PluginError::Compile(_) => "compile",
            PluginError::Instantiate(_) => "instantiate",
            PluginError::Configure(_) => "configure",
            PluginError::WrongWorld { .. } => "wrong_world",
            PluginError::BadOutput(_) => "bad_output",
            PluginError::Trap(_) => "trap",
            PluginError::BudgetExhausted { .. } => "budget_exhausted",
            PluginError::MemoryExhausted { .. } => "memory_exhausted",
            PluginError::WrongLength { .. } => "wrong_length",
            PluginError::NonFinite { .. } => "non_finite",
            PluginError::Guest(_) => "guest_error",
            PluginError::Quarantined { .. } => "quarantined",
            PluginError::QuotaExceeded { .. } => "quota_exceeded",
            PluginError::TenantCpu { .. } => "tenant_cpu",
            PluginError::TenantMemory { .. } => "tenant_memory",
            PluginError::NearBudget { .. } => "near_budget",
            PluginError::Restarting => "restarting",
        }
    }

    /// The tenant quota this failure hit, if any: the CPU budget and memory cap of an instance
    /// are the tenant's (`config::tenant`).
    pub fn quota(&self) -> Option<&'static str> {
        match self {
            PluginError::BudgetExhausted { .. } | PluginError::NearBudget { .. } => Some("cpu_ms_per_window"),
            PluginError::TenantCpu { .. } => Some("cpu_ms_per_minute"),
            PluginError::TenantMemory { .. } => Some("max_plugin_memory_bytes"),
            PluginError::MemoryExhausted { .. } => Some("max_instance_memory_bytes"),
            PluginError::QuotaExceeded { quota, .. } => Some(quota),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_values() {
        let e = PluginError::HashMismatch { reference: "gravity@0.1.0".into(), expected: "ab".into(), actual: "cd".into() };
        let msg = e.to_string();
        assert!(msg.contains("gravity@0.1.0") && msg.contains("ab") && msg.contains("cd"), "{msg}");
        assert_eq!(PluginError::WrongLength { expected: 3, got: 2 }.to_string(), "plugin returned 2 scores for 3 items");
        let mut e = PluginError::NonFinite { index: 1, item: None, value: f64::NAN };
        assert_eq!((e.kind(), e.to_string().as_str()), ("non_finite", "plugin returned a non-finite score NaN for item #1"));
        e.name_item(|k| ["a", "b"].get(k).copied());
        assert_eq!(e.to_string(), r#"plugin returned a non-finite score NaN for item "b" (#1)"#);
    }
}
