//! One scenario's scorer on the event path: runs its plugin, and when the plugin fails falls
//! back to the last good module or the built-in formula, quarantining a plugin that keeps
//! failing. Scoring itself never fails.

use std::fmt;

use metrics::Counter;

use super::cpu::Lane;
use super::error::PluginError;
use super::instance::PluginInstance;
use crate::config::ScenarioKey;
use crate::scoring::{WindowBatch, builtin};
use crate::text::cap_error;

/// Consecutive failures after which a plugin is quarantined.
pub const DEFAULT_QUARANTINE_AFTER: u32 = 3;
/// A call that takes at least this share of its per-call budget is near it; as many such calls
/// in a row as failures quarantine (a plugin living at 95% of its budget would otherwise hold
/// the pipeline thread for nearly the whole budget every window, and never fail).
pub const NEAR_BUDGET_SHARE: f64 = 0.9;

/// What a scenario's scoring is doing, for the status key and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    /// No plugin reference: the built-in formula.
    None,
    /// A reference is being prepared; the previous scorer (or the built-in formula) still runs.
    Loading { label: String },
    /// The plugin scores the windows.
    Active { label: String },
    /// The plugin failed on its last call; the last good module or the built-in formula
    /// scored instead. The plugin is tried again on the next window.
    Fallback { label: String, reason: String },
    /// The plugin failed too often (or could not be loaded) and is off until its reference or
    /// module changes.
    Quarantined { label: String, reason: String },
}

impl PluginState {
    /// Stable state name for metrics labels and the status hash.
    pub fn name(&self) -> &'static str {
        match self {
            PluginState::None => "none",
            PluginState::Loading { .. } => "loading",
            PluginState::Active { .. } => "active",
            PluginState::Fallback { .. } => "fallback",
            PluginState::Quarantined { .. } => "quarantined",
        }
    }

    /// The referenced plugin's `name@version`, if any.
    pub fn label(&self) -> Option<&str> {
        match self {
            PluginState::None => None,
            PluginState::Loading { label }
            | PluginState::Active { label }
            | PluginState::Fallback { label, .. }
            | PluginState::Quarantined { label, .. } => Some(label),
        }
    }

    /// Why the plugin is not scoring, if it is not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            PluginState::Fallback { reason, .. } | PluginState::Quarantined { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginState::None => f.write_str("builtin"),
            PluginState::Loading { label } => write!(f, "loading {label}"),
            PluginState::Active { label } => write!(f, "active {label}"),
            PluginState::Fallback { label, reason } => write!(f, "fallback from {label}: {reason}"),
            PluginState::Quarantined { label, reason } => write!(f, "quarantined {label}: {reason}"),
        }
    }
}

/// Which formula produced a batch's scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerUsed {
    Builtin,
    /// `name@version` of the plugin that scored.
    Plugin(String),
}

impl ScorerUsed {
    /// The `plugin` field of outputs: `None` for the built-in formula.
    pub fn label(&self) -> Option<&str> {
        match self {
            ScorerUsed::Builtin => None,
            ScorerUsed::Plugin(label) => Some(label),
        }
    }
}

/// The result of scoring one batch: who scored it, and the plugin failure to report, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOutcome {
    pub used: ScorerUsed,
    pub error: Option<PluginError>,
}

/// A plugin instance with its metric handles.
struct Slot {
    instance: PluginInstance,
    calls: Counter,
    /// Whether it has scored at least one batch.
    proven: bool,
}

/// Per-scenario scoring state machine. Synchronous; owned by the scenario's event-path state.
pub struct ScenarioScorer {
    key: ScenarioKey,
    quarantine_after: u32,
    active: Option<Slot>,
    /// The previous proven plugin, kept while a newly installed one has not proven itself.
    last_good: Option<Slot>,
    failures: u32,
    /// Consecutive calls near the per-call budget.
    near_budget: u32,
    /// Live or shadow: a tenant near its CPU budget per minute skips shadow calls first.
    lane: Lane,
    state: PluginState,
}

impl ScenarioScorer {
    pub fn new(key: ScenarioKey) -> Self {
        Self {
            key,
            quarantine_after: DEFAULT_QUARANTINE_AFTER,
            active: None,
            last_good: None,
            failures: 0,
            near_budget: 0,
            lane: Lane::Live,
            state: PluginState::None,
        }
    }

    /// A scorer of a shadow lane (see [`Lane`]).
    pub fn for_shadow(mut self) -> Self {
        self.lane = Lane::Shadow;
        self
    }

    /// Quarantine after `n` consecutive failures (at least 1).
    pub fn with_quarantine_after(mut self, n: u32) -> Self {
        self.quarantine_after = n.max(1);
        self
    }

    pub fn state(&self) -> &PluginState {
        &self.state
    }

    /// sha256 of the module the active plugin runs, if any: a registry change to a pinned
    /// reference whose module is already this one needs no reload.
    pub fn active_sha256(&self) -> Option<&str> {
        self.active.as_ref().map(|s| s.instance.sha256())
    }

    /// Whether a plugin that may score the next batch (the active one or the last good one it
    /// falls back on) reads the window context of WIT 0.2.0 (item ids, slide, top_n, tenant,
    /// scenario, features): the pipeline fills those only then.
    pub fn reads_context(&self) -> bool {
        [&self.active, &self.last_good].into_iter().flatten().any(|s| s.instance.wit_version().reads_context())
    }

    /// A new reference is being prepared off the event path; scoring goes on as before.
    pub fn set_loading(&mut self, label: impl Into<String>) {
        self.state = PluginState::Loading { label: label.into() };
    }

    /// Hot-swaps in a prepared instance. The current plugin, if it has proven itself, stays as
    /// the fallback until the new one scores a batch.
    pub fn install(&mut self, instance: PluginInstance) {
        let label = instance.label().to_string();
        let calls = plugin_calls_counter(&self.key, &label);
        let new = Slot { instance, calls, proven: false };
        if let Some(old) = self.active.replace(new)
            && old.proven
        {
            self.last_good = Some(old);
        }
        self.failures = 0;
        tracing::info!(scenario = %self.key, plugin = %label, "plugin installed");
        self.state = PluginState::Active { label };
    }

    /// The reference could not be prepared (not found, hash mismatch, compile or configure
    /// error). The previous scorer keeps running; the reference is quarantined until it or its
    /// module changes.
    pub fn load_failed(&mut self, label: impl Into<String>, error: &PluginError) {
        let label = label.into();
        self.count_failure(&label, error);
        tracing::warn!(scenario = %self.key, plugin = %label, error = %cap_error(&error.to_string()), "plugin could not be loaded; scoring falls back");
        if let Some(old) = self.active.take()
            && old.proven
        {
            self.last_good = Some(old);
        }
        self.state = PluginState::Quarantined { label, reason: error.to_string() };
    }

    /// The scenario no longer references a plugin: back to the built-in formula.
    pub fn clear(&mut self) {
        self.active = None;
        self.last_good = None;
        self.failures = 0;
        self.state = PluginState::None;
    }

    /// Scores `batch` into `out` (replaced, one score per item). Never fails: when the plugin
    /// fails, the last good module or the built-in formula scores instead and the failure is
    /// returned for reporting.
    pub fn score(&mut self, batch: &WindowBatch, out: &mut Vec<f64>) -> ScoreOutcome {
        let Some(slot) = self.active.as_mut() else {
            return ScoreOutcome { used: self.score_fallback(batch, out), error: None };
        };
        if let Some(refusal) = slot.instance.cpu().and_then(|cpu| cpu.admit(self.lane).err()) {
            return self.throttled(refusal, batch, out);
        }
        slot.calls.increment(1);
        let result = slot.instance.score(batch, out);
        let label = slot.instance.label().to_string();
        let error = match result {
            Err(PluginError::Restarting) => {
                // Not a new failure: the one that poisoned the instance was counted.
                let used = self.score_fallback(batch, out);
                return ScoreOutcome { used, error: Some(PluginError::Restarting) };
            }
            Ok(()) if self.is_near_budget() => {
                let (used, budget) = self.active.as_ref().map(|s| s.instance.last_call()).unwrap_or_default();
                // Quarantined at once: the calls up to here were near the budget in a row.
                self.failures = self.quarantine_after.saturating_sub(1);
                PluginError::NearBudget { used_ms: used.as_millis() as u64, budget_ms: budget.as_millis() as u64, calls: self.near_budget }
            }
            Ok(()) => {
                if let Some(slot) = self.active.as_mut()
                    && !slot.proven
                {
                    slot.proven = true;
                    // The new plugin works: the one it replaced is no longer needed.
                    self.last_good = None;
                }
                self.failures = 0;
                if !matches!(&self.state, PluginState::Active { label: l } if *l == label)
                    && !matches!(self.state, PluginState::Loading { .. })
                {
                    self.state = PluginState::Active { label: label.clone() };
                }
                return ScoreOutcome { used: ScorerUsed::Plugin(label), error: None };
            }
            Err(e) => e,
        };
        self.failures += 1;
        self.count_failure(&label, &error);
        // Tenant code's error text: capped before it reaches the state, the status and the log.
        let reason = cap_error(&error.to_string());
        if self.failures >= self.quarantine_after {
            tracing::error!(scenario = %self.key, plugin = %label, failures = self.failures, error = %reason, "plugin quarantined");
            self.active = None;
            self.state = PluginState::Quarantined { label, reason };
        } else {
            tracing::warn!(scenario = %self.key, plugin = %label, failures = self.failures, error = %reason, "plugin call failed; scoring falls back");
            if !matches!(self.state, PluginState::Loading { .. }) {
                self.state = PluginState::Fallback { label, reason };
            }
        }
        ScoreOutcome { used: self.score_fallback(batch, out), error: Some(error) }
    }

    /// Counts a call near its per-call budget; true once as many in a row as quarantine takes
    /// (the call's scores stand, but the plugin is treated as failing from here on).
    fn is_near_budget(&mut self) -> bool {
        let Some(slot) = &self.active else { return false };
        let (used, budget) = slot.instance.last_call();
        if used < budget.mul_f64(NEAR_BUDGET_SHARE) {
            self.near_budget = 0;
            return false;
        }
        self.near_budget += 1;
        self.near_budget >= self.quarantine_after
    }

    /// The tenant's CPU budget for this minute is spent (for this lane): the built-in formula
    /// scores, and a budget spent minute after minute quarantines the plugin.
    fn throttled(&mut self, refusal: super::cpu::Refusal, batch: &WindowBatch, out: &mut Vec<f64>) -> ScoreOutcome {
        let label = self.active.as_ref().map(|s| s.instance.label().to_string()).unwrap_or_default();
        let error = PluginError::TenantCpu { used_ms: refusal.used_ms, budget_ms: refusal.budget_ms };
        self.count_failure(&label, &error);
        let reason = error.to_string();
        if refusal.sustained() {
            tracing::error!(scenario = %self.key, plugin = %label, minutes = refusal.spent_minutes, "tenant CPU budget spent minute after minute; plugin quarantined");
            self.active = None;
            self.last_good = None;
            let reason = format!("{reason} ({} minutes in a row)", refusal.spent_minutes);
            self.state = PluginState::Quarantined { label, reason };
        } else if !matches!(&self.state, PluginState::Fallback { reason: r, .. } if *r == reason) {
            tracing::warn!(scenario = %self.key, plugin = %label, used_ms = refusal.used_ms, budget_ms = refusal.budget_ms, "tenant CPU budget spent for this minute; built-in formula scores");
            self.state = PluginState::Fallback { label, reason };
        }
        builtin::score_batch(batch, out);
        ScoreOutcome { used: ScorerUsed::Builtin, error: Some(error) }
    }

    /// Scores with the last good plugin, or the built-in formula if there is none or it fails.
    fn score_fallback(&mut self, batch: &WindowBatch, out: &mut Vec<f64>) -> ScorerUsed {
        if let Some(slot) = self.last_good.as_mut()
            && slot.instance.cpu().is_none_or(|cpu| cpu.admit(self.lane).is_ok())
        {
            slot.calls.increment(1);
            match slot.instance.score(batch, out) {
                Ok(()) => return ScorerUsed::Plugin(slot.instance.label().to_string()),
                Err(e) => {
                    let label = slot.instance.label().to_string();
                    self.count_failure(&label, &e);
                    tracing::warn!(scenario = %self.key, plugin = %label, error = %cap_error(&e.to_string()), "last good plugin failed too; using the built-in formula");
                    self.last_good = None;
                }
            }
        }
        builtin::score_batch(batch, out);
        ScorerUsed::Builtin
    }

    fn count_failure(&self, label: &str, error: &PluginError) {
        count_plugin_failure(&self.key, label, error);
    }
}

/// The calls counter of a module installed for scenario `key` (any world).
pub(crate) fn plugin_calls_counter(key: &ScenarioKey, label: &str) -> Counter {
    metrics::counter!("rtscore_plugin_calls_total", "tenant" => key.tenant_id.to_string(),
        "scenario" => key.scenario_id.to_string(), "plugin" => label.to_string())
}

/// Counts a failed plugin call of scenario `key` (any world): the failures metric, and the
/// tenant's exceeded quota when a quota refused it.
pub(crate) fn count_plugin_failure(key: &ScenarioKey, label: &str, error: &PluginError) {
    if let Some(quota) = error.quota() {
        crate::config::tenant::count_exceeded(&key.tenant_id, quota);
    }
    metrics::counter!("rtscore_plugin_failures_total", "tenant" => key.tenant_id.to_string(),
        "scenario" => key.scenario_id.to_string(), "plugin" => label.to_string(), "kind" => error.kind())
    .increment(1);
}

impl fmt::Debug for ScenarioScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScenarioScorer")
            .field("key", &self.key)
            .field("state", &self.state)
            .field("failures", &self.failures)
            .field("last_good", &self.last_good.as_ref().map(|s| s.instance.label()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> WindowBatch {
        let mut b = WindowBatch::new(0, 60_000, vec!["view".into()], vec![2.0], 0.0);
        b.push_row(0, 3, 1_000.0, 0.0);
        b.finish_item();
        b
    }

    #[test]
    fn without_a_plugin_it_scores_builtin() {
        let mut s = ScenarioScorer::new(ScenarioKey::new("t", "s"));
        let mut out = Vec::new();
        let outcome = s.score(&batch(), &mut out);
        assert_eq!(outcome, ScoreOutcome { used: ScorerUsed::Builtin, error: None });
        assert_eq!(out, vec![6.0]);
        assert_eq!(s.state(), &PluginState::None);
        assert_eq!(s.state().to_string(), "builtin");
    }

    #[test]
    fn load_failures_quarantine_the_reference_and_keep_scoring() {
        let mut s = ScenarioScorer::new(ScenarioKey::new("t", "s"));
        s.set_loading("p@1");
        assert_eq!(s.state().name(), "loading");
        let err = PluginError::NotFound { reference: "p@1".into() };
        s.load_failed("p@1", &err);
        assert_eq!(s.state(), &PluginState::Quarantined { label: "p@1".into(), reason: err.to_string() });
        let mut out = Vec::new();
        assert_eq!(s.score(&batch(), &mut out).used, ScorerUsed::Builtin);
        s.clear();
        assert_eq!(s.state(), &PluginState::None);
    }

    #[test]
    fn state_accessors() {
        let st = PluginState::Fallback { label: "a@1".into(), reason: "r".into() };
        assert_eq!((st.name(), st.label(), st.reason()), ("fallback", Some("a@1"), Some("r")));
        assert_eq!(PluginState::None.label(), None);
        assert_eq!(ScorerUsed::Plugin("a@1".into()).label(), Some("a@1"));
    }
}
