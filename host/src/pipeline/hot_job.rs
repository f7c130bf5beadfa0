//! The item hot score job (DESIGN §4): routes events to their scenario's window state and, as
//! the watermark passes window ends, scores each window with the scenario's config in force at
//! emission time and selects its hot list.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::scenario_map::ScenarioMap;
use super::stats::{PipelineStats, ScenarioCounters};
use crate::config::{ScenarioConfig, ScenarioKey, ScenarioStatus};
use crate::event::Event;
use crate::output::{HotList, Output, ScoredItem};
use crate::plugin::ScenarioScorer;
use crate::scoring::{WindowBatch, topn};
use crate::window::{AddOutcome, HotWindows, SeenEventIds};

/// One scenario's hot-score state.
pub struct ScenarioHot {
    pub config: Arc<ScenarioConfig>,
    pub windows: HotWindows,
    pub seen: SeenEventIds,
    pub counters: ScenarioCounters,
    /// Last emitted window end, for status.
    pub last_window_end: Option<i64>,
    /// Scores windows with the scenario's plugin, falling back to the built-in formula.
    pub scorer: ScenarioScorer,
    /// The last plugin failure, for status.
    pub last_plugin_error: Option<String>,
    batch: WindowBatch,
    scores: Vec<f64>,
}

impl ScenarioHot {
    fn new(config: Arc<ScenarioConfig>) -> Self {
        let scorer = ScenarioScorer::new(config.key.clone());
        Self {
            config,
            windows: HotWindows::default(),
            seen: SeenEventIds::new(),
            counters: ScenarioCounters::default(),
            last_window_end: None,
            scorer,
            last_plugin_error: None,
            batch: WindowBatch::default(),
            scores: Vec::new(),
        }
    }

    /// The scorer's state for status, e.g. `active gravity@0.1.0` or `builtin`.
    pub fn plugin_state(&self) -> String {
        match self.scorer.state().name() {
            "none" => "builtin".to_string(),
            _ => self.scorer.state().to_string(),
        }
    }

    /// Emits every window ending at or before `watermark` into `out`. `end_of_input` emits
    /// every window that holds events.
    fn emit_due(&mut self, watermark: i64, end_of_input: bool, out: &mut Vec<Output>) {
        let wm = if end_of_input { i64::MAX } else { watermark };
        let cfg = &self.config.hot_score;
        let g = cfg.window;
        while let Some(end) = self.windows.next_due(g, wm) {
            let start = end - g.size_ms;
            let actions = self.windows.actions().to_vec();
            let weights = actions.iter().map(|a| cfg.weight(a)).collect();
            self.batch.clear();
            self.batch = WindowBatch::new(start, end, actions, weights, cfg.decay_lambda);
            let mut ids = Vec::new();
            self.windows.build_batch(end, g, &mut self.batch, &mut ids);
            let outcome = self.scorer.score(&self.batch, &mut self.scores);
            if let Some(e) = &outcome.error {
                self.counters.plugin_failures += 1;
                self.last_plugin_error = Some(e.to_string());
            }
            let items = topn::top_n(self.scores.iter().copied().zip(ids), cfg.top_n)
                .into_iter()
                .map(|(score, id)| ScoredItem { item_id: id.to_string(), score })
                .collect();
            out.push(Output::Hot(HotList {
                key: self.config.key.clone(),
                window_start: start,
                window_end: end,
                config_revision: self.config.revision,
                plugin: outcome.used.label().map(str::to_string),
                items,
            }));
            self.counters.windows_emitted += 1;
            self.last_window_end = Some(end);
            self.windows.close_through(end, g);
        }
        if !end_of_input {
            self.windows.close_to_watermark(wm, g);
            // Ids of events older than every open window cannot recur as counted events.
            self.seen.forget_before(wm - g.size_ms);
        }
    }
}

/// What a snapshot carries of one scenario's hot-score state. The config and plugin are
/// re-derived from the scenario document; counters belong to the host that counted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HotState {
    pub windows: HotWindows,
    pub seen: SeenEventIds,
    pub last_window_end: Option<i64>,
}

/// All scenarios' hot-score state, indexed by tenant then scenario so events are routed without
/// allocating a key.
#[derive(Default)]
pub struct HotScoreJob {
    scenarios: ScenarioMap<ScenarioHot>,
}

impl HotScoreJob {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs, replaces or (with `None`, an inactive document or a disabled hot score)
    /// removes a scenario. A replaced config keeps the window state: new weights, lambda and
    /// top_n apply in full to the next emitted window.
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        match cfg.filter(|c| c.status == ScenarioStatus::Active && c.hot_score.enabled) {
            Some(cfg) => self.scenarios.upsert(key, |s| s.config = cfg.clone(), || ScenarioHot::new(cfg.clone())),
            None => self.scenarios.remove(key),
        }
    }

    /// Adds one event. Returns false when the scenario has no active hot-score config.
    pub fn on_event(&mut self, ev: &Event<'_>, stats: &mut PipelineStats) -> bool {
        let Some(s) = self.scenarios.get_mut(&ev.tenant_id, &ev.scenario_id) else {
            return false;
        };
        if let Some(id) = &ev.event_id
            && !s.seen.first_time(id, ev.ts)
        {
            stats.duplicates += 1;
            s.counters.duplicates += 1;
            return true;
        }
        match s.windows.add(&ev.item_id, &ev.action, ev.ts, s.config.hot_score.window) {
            AddOutcome::Accepted => s.counters.events += 1,
            AddOutcome::Late | AddOutcome::TooManyActions => {
                stats.late += 1;
                s.counters.late += 1;
            }
        }
        true
    }

    /// Emits every window the watermark has passed (every window, at the end of input).
    pub fn advance(&mut self, watermark: i64, end_of_input: bool, out: &mut Vec<Output>) {
        for s in self.scenarios.values_mut() {
            s.emit_due(watermark, end_of_input, out);
        }
    }

    pub fn scenario(&self, key: &ScenarioKey) -> Option<&ScenarioHot> {
        self.scenarios.get(&key.tenant_id, &key.scenario_id)
    }

    pub fn scenario_mut(&mut self, key: &ScenarioKey) -> Option<&mut ScenarioHot> {
        self.scenarios.get_mut(&key.tenant_id, &key.scenario_id)
    }

    /// A copy of the scenario's window state, if it has a hot-score config.
    pub fn export_state(&self, key: &ScenarioKey) -> Option<HotState> {
        let s = self.scenario(key)?;
        Some(HotState { windows: s.windows.clone(), seen: s.seen.clone(), last_window_end: s.last_window_end })
    }

    /// Replaces the scenario's window state (`None`: empty). False when it has no config here.
    pub fn restore_state(&mut self, key: &ScenarioKey, state: Option<HotState>) -> bool {
        let Some(s) = self.scenario_mut(key) else { return false };
        let state = state.unwrap_or(HotState { windows: HotWindows::default(), seen: SeenEventIds::new(), last_window_end: None });
        s.windows = state.windows;
        s.seen = state.seen;
        s.last_window_end = state.last_window_end;
        true
    }

    pub fn scenarios(&self) -> impl Iterator<Item = &ScenarioHot> {
        self.scenarios.values()
    }
}
