//! Per-tenant CPU budget across all of a tenant's plugin calls (docs/security.md, "The pipeline
//! thread"). The per-call budget stops one runaway call; this one stops a tenant whose many
//! scenarios, shadows and fallbacks each stay under it but together would take the pipeline
//! thread that every tenant shares. Each instance charges the wall time of its calls
//! (instantiate, configure, score) to its tenant's [`TenantCpu`]; before a call the scorer asks
//! it whether the call may run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which lane asks: shadow calls stop first, at [`SHADOW_SHARE`] of the budget, so a tenant near
/// its budget keeps its live scores from its plugins as long as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Live,
    Shadow,
}

/// Share of the minute's budget after which shadow calls are skipped.
pub const SHADOW_SHARE: f64 = 0.8;
/// Minutes in a row with the budget spent after which the tenant's plugins are quarantined.
pub const QUARANTINE_AFTER_MINUTES: u32 = 3;

/// A call the budget does not admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub used_ms: u64,
    pub budget_ms: u64,
    /// Minutes in a row (this one included) in which the budget was spent.
    pub spent_minutes: u32,
}

impl Refusal {
    /// Spent for [`QUARANTINE_AFTER_MINUTES`] in a row: not a burst but a plugin that needs more.
    pub fn sustained(&self) -> bool {
        self.spent_minutes >= QUARANTINE_AFTER_MINUTES
    }
}

#[derive(Debug, Default)]
struct Minute {
    /// Minutes since the ledger started.
    index: u64,
    used: Duration,
    /// The budget was spent in this minute.
    spent: bool,
    /// Consecutive minutes spent, up to and including the last spent one.
    streak: u32,
}

/// One tenant's CPU use in the current minute of wall time.
#[derive(Debug)]
pub struct TenantCpu {
    epoch: Instant,
    budget: Mutex<Duration>,
    minute: Mutex<Minute>,
}

impl TenantCpu {
    fn new(epoch: Instant, budget: Duration) -> Self {
        Self { epoch, budget: Mutex::new(budget), minute: Mutex::new(Minute::default()) }
    }

    fn budget(&self) -> Duration {
        *self.budget.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs() / 60
    }

    /// Minute `index`, rolled over if wall time moved on.
    fn with_minute<R>(&self, index: u64, f: impl FnOnce(&mut Minute) -> R) -> R {
        let mut m = self.minute.lock().unwrap_or_else(PoisonError::into_inner);
        if m.index != index {
            // A spent minute right before this one continues the streak; a gap ends it.
            let streak = if m.spent && index == m.index + 1 { m.streak } else { 0 };
            *m = Minute { index, used: Duration::ZERO, spent: false, streak };
        }
        f(&mut m)
    }

    /// Charges `used` of plugin time.
    pub fn charge(&self, used: Duration) {
        self.charge_at(self.now(), used);
    }

    fn charge_at(&self, index: u64, used: Duration) {
        let budget = self.budget();
        self.with_minute(index, |m| {
            m.used += used;
            if m.used >= budget && !m.spent {
                m.spent = true;
                m.streak += 1;
            }
        });
    }

    /// Whether a call of `lane` may run now.
    pub fn admit(&self, lane: Lane) -> Result<(), Refusal> {
        self.admit_at(self.now(), lane)
    }

    fn admit_at(&self, index: u64, lane: Lane) -> Result<(), Refusal> {
        let budget = self.budget();
        let limit = match lane {
            Lane::Live => budget,
            Lane::Shadow => budget.mul_f64(SHADOW_SHARE),
        };
        self.with_minute(index, |m| {
            if m.used < limit {
                return Ok(());
            }
            Err(Refusal { used_ms: m.used.as_millis() as u64, budget_ms: budget.as_millis() as u64, spent_minutes: m.streak })
        })
    }

    /// Plugin time used in the current minute.
    pub fn used(&self) -> Duration {
        self.with_minute(self.now(), |m| m.used)
    }
}

/// Every tenant's [`TenantCpu`], shared by the instances the [`PluginLoader`](super::PluginLoader) prepares.
#[derive(Debug, Clone)]
pub struct CpuLedger {
    epoch: Instant,
    tenants: Arc<Mutex<HashMap<String, Arc<TenantCpu>>>>,
}

impl Default for CpuLedger {
    fn default() -> Self {
        Self { epoch: Instant::now(), tenants: Arc::default() }
    }
}

impl CpuLedger {
    /// `tenant`'s account, with its budget per minute set to `per_minute`.
    pub fn tenant(&self, tenant: &str, per_minute: Duration) -> Arc<TenantCpu> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let cpu = tenants.entry(tenant.to_string()).or_insert_with(|| Arc::new(TenantCpu::new(self.epoch, per_minute)));
        *cpu.budget.lock().unwrap_or_else(PoisonError::into_inner) = per_minute;
        cpu.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_stops_first_then_live() {
        let ledger = CpuLedger::default();
        let t = ledger.tenant("t", Duration::from_millis(100));
        assert_eq!(t.admit(Lane::Shadow), Ok(()));
        t.charge(Duration::from_millis(85));
        assert!(t.admit(Lane::Shadow).is_err());
        assert_eq!(t.admit(Lane::Live), Ok(()));
        t.charge(Duration::from_millis(20));
        let refusal = t.admit(Lane::Live).unwrap_err();
        assert_eq!((refusal.used_ms, refusal.budget_ms, refusal.spent_minutes), (105, 100, 1));
        assert!(!refusal.sustained());
        // Another tenant is untouched.
        assert_eq!(ledger.tenant("other", Duration::from_millis(100)).admit(Lane::Live), Ok(()));
    }

    #[test]
    fn minutes_spent_in_a_row_are_sustained_and_a_gap_resets() {
        let t = TenantCpu::new(Instant::now(), Duration::from_millis(10));
        let spend = |index: u64| {
            t.charge_at(index, Duration::from_millis(20));
            t.admit_at(index, Lane::Live).unwrap_err().spent_minutes
        };
        assert_eq!(spend(1), 1);
        assert_eq!(spend(2), 2);
        assert!(t.admit_at(3, Lane::Live).is_ok(), "a new minute has a new budget");
        assert_eq!(spend(3), 3);
        assert!(t.admit_at(3, Lane::Live).unwrap_err().sustained());
        assert_eq!(spend(5), 1, "a minute without spending ends the streak");
    }
}
