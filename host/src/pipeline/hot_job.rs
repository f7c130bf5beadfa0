//! The item hot score job (DESIGN §4): routes events to their scenario's window state and, as
//! the watermark passes window ends, scores each window with the scenario's config in force at
//! emission time and selects its hot list.

use std::collections::HashMap;
use std::sync::Arc;

use super::stats::{PipelineStats, ScenarioCounters};
use crate::config::{ScenarioConfig, ScenarioKey, ScenarioStatus};
use crate::event::Event;
use crate::output::{HotList, Output, ScoredItem};
use crate::scoring::{WindowBatch, builtin, topn};
use crate::window::{AddOutcome, HotWindows, SeenEventIds};

/// One scenario's hot-score state.
pub struct ScenarioHot {
    pub config: Arc<ScenarioConfig>,
    pub windows: HotWindows,
    pub seen: SeenEventIds,
    pub counters: ScenarioCounters,
    /// Last emitted window end, for status.
    pub last_window_end: Option<i64>,
    /// The watermark at which the next window end is passed; checked after every event so
    /// windows close at the same event whatever the batching (results depend on event order
    /// only).
    close_at: i64,
    batch: WindowBatch,
    scores: Vec<f64>,
}

impl ScenarioHot {
    fn new(config: Arc<ScenarioConfig>) -> Self {
        Self {
            config,
            windows: HotWindows::default(),
            seen: SeenEventIds::new(),
            counters: ScenarioCounters::default(),
            last_window_end: None,
            close_at: i64::MIN,
            batch: WindowBatch::default(),
            scores: Vec::new(),
        }
    }

    /// The scorer's state for status: `builtin` until plugins are wired.
    pub fn plugin_state(&self) -> String {
        "builtin".to_string()
    }

    /// Emits every due window into `out`. `end_of_input` treats the watermark as infinite.
    fn emit_due(&mut self, lateness_ms: i64, end_of_input: bool, out: &mut Vec<Output>) {
        let Some(wm) = (if end_of_input { Some(i64::MAX) } else { self.windows.watermark(lateness_ms) }) else {
            return;
        };
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
            builtin::score_batch(&self.batch, &mut self.scores);
            let items = topn::top_n(self.scores.iter().copied().zip(ids), cfg.top_n)
                .into_iter()
                .map(|(score, id)| ScoredItem { item_id: id.to_string(), score })
                .collect();
            out.push(Output::Hot(HotList {
                key: self.config.key.clone(),
                window_start: start,
                window_end: end,
                config_revision: self.config.revision,
                plugin: None,
                items,
            }));
            self.counters.windows_emitted += 1;
            self.last_window_end = Some(end);
            self.windows.close_through(end, g);
        }
        if !end_of_input {
            self.windows.close_to_watermark(wm, g);
            self.close_at = g.next_end_after(wm);
        }
        if let Some(open) = self.windows.max_ts().map(|m| m - lateness_ms - g.size_ms) {
            self.seen.forget_before(open);
        }
    }
}

/// All scenarios' hot-score state, indexed by tenant then scenario so events are routed without
/// allocating a key.
pub struct HotScoreJob {
    lateness_ms: i64,
    scenarios: HashMap<Arc<str>, HashMap<Arc<str>, ScenarioHot>>,
}

impl HotScoreJob {
    pub fn new(lateness_ms: i64) -> Self {
        Self { lateness_ms, scenarios: HashMap::new() }
    }

    /// Installs, replaces or (with `None`, an inactive document or a disabled hot score)
    /// removes a scenario. A replaced config keeps the window state: new weights, lambda and
    /// top_n apply in full to the next emitted window.
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        let cfg = cfg.filter(|c| c.status == ScenarioStatus::Active && c.hot_score.enabled);
        match cfg {
            Some(cfg) => {
                let tenant = self.scenarios.entry(key.tenant_id.clone()).or_default();
                match tenant.get_mut(&*key.scenario_id) {
                    Some(s) => s.config = cfg,
                    None => {
                        tenant.insert(key.scenario_id.clone(), ScenarioHot::new(cfg));
                    }
                }
            }
            None => {
                if let Some(t) = self.scenarios.get_mut(&*key.tenant_id) {
                    t.remove(&*key.scenario_id);
                    if t.is_empty() {
                        self.scenarios.remove(&*key.tenant_id);
                    }
                }
            }
        }
    }

    /// Adds one event; windows its watermark passes are emitted into `out` right away.
    /// Returns false when the scenario has no active hot-score config.
    pub fn on_event(&mut self, ev: &Event<'_>, stats: &mut PipelineStats, out: &mut Vec<Output>) -> bool {
        let Some(s) = self.scenarios.get_mut(&*ev.tenant_id).and_then(|t| t.get_mut(&*ev.scenario_id)) else {
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
        if s.windows.watermark(self.lateness_ms).is_some_and(|wm| wm >= s.close_at) {
            s.emit_due(self.lateness_ms, false, out);
        }
        true
    }

    pub fn emit_due(&mut self, end_of_input: bool, out: &mut Vec<Output>) {
        for tenant in self.scenarios.values_mut() {
            for s in tenant.values_mut() {
                s.emit_due(self.lateness_ms, end_of_input, out);
            }
        }
    }

    pub fn scenario(&self, key: &ScenarioKey) -> Option<&ScenarioHot> {
        self.scenarios.get(&*key.tenant_id)?.get(&*key.scenario_id)
    }

    pub fn scenarios(&self) -> impl Iterator<Item = &ScenarioHot> {
        self.scenarios.values().flat_map(|t| t.values())
    }
}
