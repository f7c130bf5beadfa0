//! The limits the plugin engine enforces, as configuration: what one plugin instance may use
//! (CPU budget per call, linear memory, tables, kept stderr) and the largest module a registry
//! accepts. The host sets them; a tenant's quotas (`config::tenant`) narrow them per tenant.

use std::time::Duration;

/// Modules larger than this are refused by every registry, whatever a tenant's quota says.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// A tenant's module-size quota unless its tenant document sets `max_module_bytes`: room for a
/// Python or JavaScript component, which carries its interpreter (componentize-py's ~19 MB,
/// componentize-js's ~12 MB; a Rust module is under 1 MB). One limit for every language, as a
/// module's language is whatever its bytes say: a per-language allowance would be the same
/// limit for a hostile tenant (docs/plugins.md, "Budgets for an interpreter").
pub const DEFAULT_MAX_MODULE_BYTES: usize = 32 << 20;

/// How a call's CPU budget is enforced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetMode {
    /// Epoch interruption: a background thread ticks the engine's epoch every `tick`; a call
    /// traps once its deadline (budget rounded up to ticks) passes. Near-zero cost in the
    /// guest; wall-clock based, so a descheduled host thread also spends budget.
    Epoch { tick: Duration },
    /// Fuel: every wasm instruction costs about one unit; deterministic but slows the guest.
    /// `units_per_ms` converts the millisecond budget into fuel.
    Fuel { units_per_ms: u64 },
}

/// Per-instance limits. One value configures the whole engine; every store gets its own
/// copy of the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxLimits {
    pub budget_mode: BudgetMode,
    /// CPU budget of one call (instantiate + configure, or one `score`), before the per-item
    /// allowance.
    pub call_budget: Duration,
    /// Extra budget per item of the batch, so large windows are not starved.
    pub budget_per_item: Duration,
    /// Linear memory cap per instance. A window's columns are copied into guest memory, about
    /// 24 bytes per row, so leave room for the largest window plus the plugin's own needs.
    pub memory_bytes: usize,
    /// Table elements cap per table (function references).
    pub table_elements: usize,
    /// Guest stderr kept per instance (the tail, for panic messages in errors).
    pub stderr_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            budget_mode: BudgetMode::Epoch { tick: Duration::from_millis(2) },
            call_budget: Duration::from_millis(200),
            budget_per_item: Duration::from_micros(1),
            memory_bytes: 128 << 20,
            table_elements: 50_000,
            stderr_bytes: 4 << 10,
        }
    }
}

impl SandboxLimits {
    /// The budget of a call over `items` items.
    pub fn budget_for(&self, items: usize) -> Duration {
        self.call_budget + self.budget_per_item.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_scales_with_items() {
        let l = SandboxLimits::default();
        assert_eq!(l.budget_for(0), l.call_budget);
        assert_eq!(l.budget_for(1000), l.call_budget + Duration::from_millis(1));
    }
}
