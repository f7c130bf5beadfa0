//! The plugin of a scenario's metrics or profile job on the event path: runs it when it is
//! installed and healthy, and otherwise tells the job to take its built-in path. Same rules as
//! the hot-score [`ScenarioScorer`](super::scorer::ScenarioScorer): the tenant's CPU budget per
//! minute, calls near their per-call budget, quarantine after consecutive failures, off until
//! the reference or module changes. The fallback is the job's own (built-in metrics only, the
//! built-in profile update), so no last good module is kept.

use std::fmt;

use metrics::Counter;

use super::bindings::PluginWorld;
use super::cpu::Lane;
use super::error::PluginError;
use super::instance::PluginInstance;
use super::scorer::{DEFAULT_QUARANTINE_AFTER, NEAR_BUDGET_SHARE, PluginState};
use crate::config::ScenarioKey;
use crate::text::cap_error;

/// Per-scenario plugin state of a metrics or profile job.
pub struct JobPlugin {
    key: ScenarioKey,
    world: PluginWorld,
    /// Shadow lanes stop at a share of the tenant's CPU budget, leaving the rest to live calls.
    cpu_lane: Lane,
    quarantine_after: u32,
    active: Option<(PluginInstance, Counter)>,
    failures: u32,
    near_budget: u32,
    state: PluginState,
    /// The last failure, for status.
    pub last_error: Option<String>,
}

impl JobPlugin {
    pub fn new(key: ScenarioKey, world: PluginWorld) -> Self {
        Self {
            key,
            world,
            cpu_lane: Lane::Live,
            quarantine_after: DEFAULT_QUARANTINE_AFTER,
            active: None,
            failures: 0,
            near_budget: 0,
            state: PluginState::None,
            last_error: None,
        }
    }

    /// A shadow candidate's plugin: admitted only below the shadow share of the tenant's CPU
    /// budget, like a hot-score candidate's scorer.
    pub fn for_shadow(mut self) -> Self {
        self.cpu_lane = Lane::Shadow;
        self
    }

    /// Quarantine after `n` consecutive failures (at least 1).
    pub fn with_quarantine_after(mut self, n: u32) -> Self {
        self.quarantine_after = n.max(1);
        self
    }

    pub fn world(&self) -> PluginWorld {
        self.world
    }

    pub fn state(&self) -> &PluginState {
        &self.state
    }

    pub fn active_sha256(&self) -> Option<&str> {
        self.active.as_ref().map(|(i, _)| i.sha256())
    }

    /// Whether a plugin would be called now (else the job takes its built-in path).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn set_loading(&mut self, label: impl Into<String>) {
        self.state = PluginState::Loading { label: label.into() };
    }

    /// Hot-swaps in a prepared instance; the next call uses it.
    pub fn install(&mut self, instance: PluginInstance) {
        let label = instance.label().to_string();
        let calls = super::scorer::plugin_calls_counter(&self.key, &label);
        self.active = Some((instance, calls));
        self.failures = 0;
        self.near_budget = 0;
        self.state = PluginState::Active { label };
    }

    /// The reference could not be prepared: the built-in path runs; quarantined until the
    /// reference or its module changes.
    pub fn load_failed(&mut self, label: impl Into<String>, error: &PluginError) {
        let label = label.into();
        self.count_failure(&label, error);
        self.active = None;
        let reason = cap_error(&error.to_string());
        self.last_error = Some(reason.clone());
        self.state = PluginState::Quarantined { label, reason };
    }

    /// The scenario no longer references a plugin.
    pub fn clear(&mut self) {
        self.active = None;
        self.failures = 0;
        self.near_budget = 0;
        self.state = PluginState::None;
    }

    /// Runs `f` on the active plugin. `None`: no plugin is active (none referenced, loading
    /// failed, quarantined); `Some(Err)`: it failed (counted, logged, maybe quarantined). Either
    /// way the caller takes its built-in path. Never blocks beyond one call's budget.
    pub fn call<T>(&mut self, f: impl FnOnce(&mut PluginInstance) -> Result<T, PluginError>) -> Option<Result<T, PluginError>> {
        let (instance, calls) = self.active.as_mut()?;
        let label = instance.label().to_string();
        if let Some(refusal) = instance.cpu().and_then(|cpu| cpu.admit(self.cpu_lane).err()) {
            let error = PluginError::TenantCpu { used_ms: refusal.used_ms, budget_ms: refusal.budget_ms };
            self.count_failure(&label, &error);
            let reason = error.to_string();
            if refusal.sustained() {
                tracing::error!(scenario = %self.key, world = %self.world, plugin = %label, minutes = refusal.spent_minutes, "tenant CPU budget spent minute after minute; plugin quarantined");
                self.active = None;
                self.state = PluginState::Quarantined { label, reason: format!("{reason} ({} minutes in a row)", refusal.spent_minutes) };
            } else {
                self.state = PluginState::Fallback { label, reason: reason.clone() };
            }
            self.last_error = Some(reason);
            return Some(Err(error));
        }
        calls.increment(1);
        let result = f(instance);
        let (used, budget) = instance.last_call();
        let error = match result {
            Err(PluginError::Restarting) => return Some(Err(PluginError::Restarting)),
            Ok(value) => {
                if used < budget.mul_f64(NEAR_BUDGET_SHARE) {
                    self.near_budget = 0;
                } else {
                    self.near_budget += 1;
                }
                if self.near_budget < self.quarantine_after {
                    self.failures = 0;
                    if !matches!(&self.state, PluginState::Active { label: l } if *l == label) {
                        self.state = PluginState::Active { label };
                    }
                    return Some(Ok(value));
                }
                // The result stands, but a plugin living at its budget is about to fail.
                self.failures = self.quarantine_after.saturating_sub(1);
                PluginError::NearBudget { used_ms: used.as_millis() as u64, budget_ms: budget.as_millis() as u64, calls: self.near_budget }
            }
            Err(e) => e,
        };
        self.failures += 1;
        self.count_failure(&label, &error);
        let reason = cap_error(&error.to_string());
        self.last_error = Some(reason.clone());
        if self.failures >= self.quarantine_after {
            tracing::error!(scenario = %self.key, world = %self.world, plugin = %label, failures = self.failures, error = %reason, "plugin quarantined");
            self.active = None;
            self.state = PluginState::Quarantined { label, reason };
        } else {
            tracing::warn!(scenario = %self.key, world = %self.world, plugin = %label, failures = self.failures, error = %reason, "plugin call failed; the built-in path runs instead");
            self.state = PluginState::Fallback { label, reason };
        }
        Some(Err(error))
    }

    fn count_failure(&self, label: &str, error: &PluginError) {
        super::scorer::count_plugin_failure(&self.key, label, error);
    }
}

impl fmt::Debug for JobPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobPlugin").field("key", &self.key).field("world", &self.world).field("state", &self.state).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_active_plugin_the_job_takes_its_built_in_path() {
        let mut p = JobPlugin::new(ScenarioKey::new("t", "s"), PluginWorld::Metrics);
        assert!(p.call(|_| Ok(1)).is_none());
        p.set_loading("m@1");
        assert!(p.call(|_| Ok(1)).is_none(), "loading: built-in meanwhile");
        let err = PluginError::NotFound { reference: "m@1".into() };
        p.load_failed("m@1", &err);
        assert_eq!(p.state().name(), "quarantined");
        assert_eq!(p.last_error.as_deref(), Some(err.to_string().as_str()));
        assert!(p.call(|_| Ok(1)).is_none());
        p.clear();
        assert_eq!(p.state(), &PluginState::None);
    }
}
