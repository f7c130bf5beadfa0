//! The item hot score job (DESIGN §4): routes events to their scenario's window state and, as
//! the watermark passes window ends, scores each window with the scenario's config in force at
//! emission time (switching revisions at their effective window end) and selects its hot list;
//! a scenario's candidate scores the same windows in shadow.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::quota::MemoryLimits;
use super::scenario_map::{Route, ScenarioMap};
use super::shadow::{self, ShadowLane};
use super::stats::{Routed, ScenarioCounters};
use crate::config::{Candidate, ScenarioConfig, ScenarioKey, ScenarioStatus};
use crate::event::{Event, QuotaKind};
use crate::output::status::PipelineStats;
use crate::output::{HotList, Output, ScoredItem, ShadowList};
use crate::plugin::ScenarioScorer;
use crate::scoring::{WindowBatch, topn};
use crate::window::{AddOutcome, HotWindows, HotWindowsV2, Seen, SeenEventIds};

/// A revision waiting for its `effective_from_window_end`, with the scorer prepared for its
/// plugin reference, so the switch needs no loading.
pub struct PendingConfig {
    pub config: Arc<ScenarioConfig>,
    pub scorer: ScenarioScorer,
}

/// One scenario's hot-score state.
pub struct ScenarioHot {
    /// The config in force: it scores every window up to a pending revision's effective time.
    pub config: Arc<ScenarioConfig>,
    pub pending: Option<PendingConfig>,
    /// Revisions effective after `pending`, by effective time. Several changes stored in quick
    /// succession each wait for their own window end, so a host that reads them all before the
    /// first one's switch scores the same windows as one that switched in between.
    queued: Vec<Arc<ScenarioConfig>>,
    pub windows: HotWindows,
    pub seen: SeenEventIds,
    pub counters: ScenarioCounters,
    /// The tenant's memory quotas.
    pub limits: MemoryLimits,
    /// Last emitted window end, for status.
    pub last_window_end: Option<i64>,
    /// Scores windows with the scenario's plugin, falling back to the built-in formula.
    pub scorer: ScenarioScorer,
    /// The last plugin failure, for status.
    pub last_plugin_error: Option<String>,
    /// The candidate of the config in force, scored in shadow.
    pub shadow: Option<ShadowLane>,
    /// The candidate was removed: the next window says so (`Output::ShadowEnded`).
    shadow_ended: bool,
    /// Revisions switched to at their effective window end: the runtime prepares the next
    /// waiting module when this moves.
    pub switches: u64,
    batch: WindowBatch,
    scores: Vec<f64>,
}

impl ScenarioHot {
    fn new(config: Arc<ScenarioConfig>) -> Self {
        let scorer = ScenarioScorer::new(config.key.clone());
        let mut s = Self {
            config: config.clone(),
            pending: None,
            queued: Vec::new(),
            windows: HotWindows::default(),
            seen: SeenEventIds::new(),
            counters: ScenarioCounters::default(),
            limits: MemoryLimits::default(),
            last_window_end: None,
            scorer,
            last_plugin_error: None,
            shadow: None,
            shadow_ended: false,
            switches: 0,
            batch: WindowBatch::default(),
            scores: Vec::new(),
        };
        s.switch_to(config, None);
        s
    }

    /// The batch of the last emitted window (its feature columns included).
    pub fn last_batch(&self) -> &WindowBatch {
        &self.batch
    }

    /// The scorer's state for status, e.g. `active gravity@0.1.0` or `builtin`.
    pub fn plugin_state(&self) -> String {
        scorer_state(&self.scorer)
    }

    /// Takes a new revision: at once, or (with `effective_from_window_end` ahead of the last
    /// emitted window) from that window end on. A revision whose effective window was already
    /// emitted here applies at once and is counted as late: this host was ahead of the margin.
    fn apply(&mut self, cfg: Arc<ScenarioConfig>) {
        match cfg.effective_from_window_end {
            Some(e) if self.last_window_end.is_some_and(|last| last >= e) => {
                tracing::warn!(scenario = %cfg.key, revision = cfg.revision, effective_from_window_end = e, last_window_end = self.last_window_end,
                    "revision arrived after its effective window was emitted here; applying it from the next window");
                metrics::counter!("rtscore_config_switch_late_total", "tenant" => cfg.key.tenant_id.to_string(),
                    "scenario" => cfg.key.scenario_id.to_string())
                .increment(1);
                self.pending = None;
                self.queued.clear();
                self.switch_to(cfg, None);
            }
            // A defaults layer change (config::layers) keeps the scenario's revision but
            // changes its config: it waits for its effective window end all the same.
            Some(e) if cfg.revision != self.config.revision || *cfg != *self.config => {
                // Older waiting revisions effective at or after this one's time are superseded
                // by it; earlier ones keep their windows (a layer change of the same revision
                // arrives after the ones it supersedes).
                let old = self.pending.take();
                let mut waiting: Vec<Arc<ScenarioConfig>> = old
                    .iter()
                    .map(|p| p.config.clone())
                    .chain(self.queued.drain(..))
                    .filter(|c| {
                        c.revision > cfg.revision || (c.revision <= cfg.revision && c.effective_from_window_end.is_some_and(|w| w < e))
                    })
                    .collect();
                waiting.push(cfg);
                waiting.sort_by_key(|c| (c.effective_from_window_end, c.revision));
                let head = waiting.remove(0);
                // A pending scorer already on the same reference is kept.
                let scorer = match old {
                    Some(p) if p.config.hot_score.plugin == head.hot_score.plugin => p.scorer,
                    _ => ScenarioScorer::new(head.key.clone()),
                };
                self.pending = Some(PendingConfig { config: head, scorer });
                self.queued = waiting;
            }
            _ => {
                self.pending = None;
                self.queued.clear();
                self.switch_to(cfg, None);
            }
        }
    }

    /// Puts `cfg` in force, with `scorer` when its plugin reference differs from the current one.
    fn switch_to(&mut self, cfg: Arc<ScenarioConfig>, scorer: Option<ScenarioScorer>) {
        if let Some(s) = scorer {
            self.scorer = s;
            self.last_plugin_error = None;
        }
        let had_shadow = self.shadow.is_some();
        self.shadow = match cfg.candidate.as_ref().and_then(Candidate::hot_score) {
            Some(hot) => Some(match self.shadow.take() {
                Some(mut lane) => {
                    lane.update(hot.clone());
                    lane
                }
                None => ShadowLane::new(&cfg.key, hot.clone()),
            }),
            None => None,
        };
        // A new candidate overwrites the shadow keys itself.
        self.shadow_ended = (had_shadow || self.shadow_ended) && self.shadow.is_none();
        self.windows.set_features(&cfg.hot_score.features);
        self.config = cfg;
    }

    /// Emits every window ending at or before `watermark` into `out`, switching to a pending
    /// revision at its effective window end. `end_of_input` emits every window that holds events.
    fn emit_due(&mut self, watermark: i64, end_of_input: bool, out: &mut Vec<Output>) {
        let wm = if end_of_input { i64::MAX } else { watermark };
        while let Some(end) = self.windows.next_due(self.config.hot_score.window, wm) {
            if let Some(p) = self.pending.take_if(|p| p.config.effective_from_window_end.is_none_or(|e| end >= e)) {
                tracing::info!(scenario = %p.config.key, from = self.config.revision, to = p.config.revision, window_end = end,
                    "switching revision at its effective window end");
                self.switches += 1;
                let scorer = (p.config.hot_score.plugin != self.config.hot_score.plugin).then_some(p.scorer);
                self.switch_to(p.config, scorer);
                // The next waiting revision's module is prepared from here on (runtime::plugins).
                if !self.queued.is_empty() {
                    let next = self.queued.remove(0);
                    self.pending = Some(PendingConfig { scorer: ScenarioScorer::new(next.key.clone()), config: next });
                }
                // The geometry may have changed: find the next due window again.
                continue;
            }
            self.emit_window(end, out);
        }
        // A scenario that has accepted no event yet keeps its windows open: its events may
        // come from a partition behind this host's clock (one taken over from a host that
        // died before its first snapshot), and they are judged when they come.
        if !end_of_input && self.windows.max_ts().is_some() {
            let g = self.config.hot_score.window;
            self.windows.close_to_watermark(wm, g);
            // Ids of events older than every open window cannot recur as counted events.
            self.seen.forget_before(wm - g.size_ms);
        }
    }

    /// Scores the window ending at `end` with the config in force (and the candidate, if any).
    fn emit_window(&mut self, end: i64, out: &mut Vec<Output>) {
        let cfg = &self.config.hot_score;
        let g = cfg.window;
        let start = end - g.size_ms;
        // The batch's vectors are reused from window to window: no allocation once warm.
        self.windows.recycle_features(&mut self.batch);
        self.batch.clear();
        (self.batch.window_start_ms, self.batch.window_end_ms, self.batch.decay_lambda) = (start, end, cfg.decay_lambda);
        self.batch.actions.extend_from_slice(self.windows.actions());
        self.batch.weights.extend(self.batch.actions.iter().map(|a| cfg.weight(a)));
        self.windows.build_batch(end, g, &mut self.batch);
        // The window context of WIT 0.2.0 costs a copy of every item id: only made when a
        // scorer that may score this window reads it, never for the built-in formula or 0.1.0.
        let shadow_reads = self.shadow.as_ref().is_some_and(|sh| sh.scorer.reads_context());
        if self.scorer.reads_context() || shadow_reads {
            for id in self.windows.batch_ids() {
                self.batch.push_item_id(id);
            }
            self.batch.slide_ms = g.slide_ms;
            self.batch.top_n = u32::try_from(cfg.top_n).unwrap_or(u32::MAX);
            // Reusing the strings' buffers: no allocation once warm.
            let key = &self.config.key;
            self.batch.tenant_id.clear();
            self.batch.tenant_id.push_str(&key.tenant_id);
            self.batch.scenario_id.clear();
            self.batch.scenario_id.push_str(&key.scenario_id);
        }
        let mut outcome = self.scorer.score(&self.batch, &mut self.scores);
        if let Some(e) = &mut outcome.error {
            self.counters.plugin_failures += 1;
            e.name_item(|k| (k < self.batch.item_count()).then(|| self.windows.batch_item(k)));
            self.last_plugin_error = Some(e.to_string());
        }
        let (windows, item_count) = (&self.windows, self.batch.item_count());
        let list = |scores: &[f64], top_n: usize| -> Vec<ScoredItem> {
            topn::top_n_indexed(scores, top_n, |k| windows.batch_item(k))
                .into_iter()
                .map(|(score, k)| ScoredItem { item_id: windows.batch_item(k).to_string(), score })
                .collect()
        };
        let items = list(&self.scores, cfg.top_n);
        let hot_list = |items: Vec<ScoredItem>, plugin: Option<&str>| HotList {
            key: self.config.key.clone(),
            window_start: start,
            window_end: end,
            config_revision: self.config.revision,
            plugin: plugin.map(str::to_string),
            items,
        };
        // The candidate scores the same batch with its own weights and decay.
        let shadow = self.shadow.as_mut().map(|sh| {
            self.batch.weights = self.batch.actions.iter().map(|a| sh.hot.weight(a)).collect();
            self.batch.decay_lambda = sh.hot.decay_lambda;
            self.batch.top_n = u32::try_from(sh.hot.top_n).unwrap_or(u32::MAX);
            let mut o = sh.scorer.score(&self.batch, &mut sh.scores);
            if let Some(e) = &mut o.error {
                e.name_item(|k| (k < item_count).then(|| windows.batch_item(k)));
                sh.last_plugin_error = Some(e.to_string());
            }
            let shadow_items = list(&sh.scores, sh.hot.top_n);
            let comparison = shadow::compare(&items, &shadow_items, cfg.top_n);
            sh.last = Some((end, comparison));
            ShadowList { list: hot_list(shadow_items, o.used.label()), comparison }
        });
        out.push(Output::Hot(hot_list(items, outcome.used.label())));
        out.extend(shadow.map(Output::Shadow));
        if std::mem::take(&mut self.shadow_ended) {
            out.push(Output::ShadowEnded { key: self.config.key.clone(), window_end: end });
        }
        self.counters.windows_emitted += 1;
        self.last_window_end = Some(end);
        self.windows.close_through(end, g);
    }
}

/// A scorer's state for status: `builtin`, `active gravity@0.1.0`, `quarantined ...`.
pub fn scorer_state(scorer: &ScenarioScorer) -> String {
    match scorer.state().name() {
        "none" => "builtin".to_string(),
        _ => scorer.state().to_string(),
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

/// [`HotState`] as snapshot formats 1 and 2 wrote it: windows without features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HotStateV2 {
    pub windows: HotWindowsV2,
    pub seen: SeenEventIds,
    pub last_window_end: Option<i64>,
}

impl From<HotStateV2> for HotState {
    fn from(v: HotStateV2) -> Self {
        Self { windows: v.windows.0, seen: v.seen, last_window_end: v.last_window_end }
    }
}

impl From<HotState> for HotStateV2 {
    fn from(s: HotState) -> Self {
        Self { windows: HotWindowsV2(s.windows), seen: s.seen, last_window_end: s.last_window_end }
    }
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
    /// top_n apply in full to the next emitted window, or from its `effective_from_window_end`.
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        match cfg.filter(|c| c.status == ScenarioStatus::Active && c.hot_score.enabled) {
            Some(cfg) => self.scenarios.upsert(key, |s| s.apply(cfg.clone()), || ScenarioHot::new(cfg.clone())),
            None => self.scenarios.remove(key),
        }
    }

    /// Adds one event to its scenario's windows.
    pub fn on_event(&mut self, ev: &Event<'_>, route: Route, stats: &mut PipelineStats) -> Routed {
        let Some(s) = self.scenarios.get_mut_routed(route, &ev.tenant_id, &ev.scenario_id) else {
            return Routed::NotHere;
        };
        if let Some(id) = &ev.event_id {
            let (max_ids, quota) = s.limits.bound(QuotaKind::EventIds);
            match s.seen.check(id, ev.ts, max_ids) {
                Seen::First => {}
                Seen::Before => {
                    stats.duplicates += 1;
                    s.counters.duplicates += 1;
                    return Routed::Duplicate;
                }
                Seen::Full => {
                    s.counters.over_quota += 1;
                    return Routed::OverQuota(quota, max_ids);
                }
            }
        }
        let (max_items, quota) = s.limits.bound(QuotaKind::Items);
        match s.windows.add_event(ev, s.config.hot_score.window, max_items) {
            AddOutcome::Accepted => {
                s.counters.events += 1;
                Routed::Counted
            }
            AddOutcome::Late | AddOutcome::TooManyActions => {
                stats.late += 1;
                s.counters.late += 1;
                Routed::Late
            }
            AddOutcome::OverQuota => {
                s.counters.over_quota += 1;
                Routed::OverQuota(quota, max_items)
            }
        }
    }

    /// Holds `tenant`'s scenarios to `limits`.
    pub fn set_limits(&mut self, tenant: &str, limits: MemoryLimits) {
        for s in self.scenarios.tenant_values_mut(tenant) {
            s.limits = limits;
        }
    }

    /// Bytes of `tenant`'s window state.
    pub fn tenant_state_bytes(&mut self, tenant: &str) -> usize {
        self.scenarios.tenant_values_mut(tenant).map(|s| s.windows.state_bytes()).sum()
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.scenarios.has_tenant(tenant)
    }

    /// Emits every window of `tenant` its watermark has passed.
    pub fn advance(&mut self, tenant: &str, watermark: i64, out: &mut Vec<Output>) {
        for s in self.scenarios.tenant_values_mut(tenant) {
            s.emit_due(watermark, false, out);
        }
    }

    /// End of a finite input: emits every window that holds events.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        for s in self.scenarios.values_mut() {
            s.emit_due(i64::MAX, true, out);
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
        // The snapshot's features as declared then; the config in force decides what is kept.
        s.windows.set_features(&s.config.hot_score.features);
        s.seen = state.seen;
        s.last_window_end = state.last_window_end;
        true
    }

    pub fn scenarios(&self) -> impl Iterator<Item = &ScenarioHot> {
        self.scenarios.values()
    }

    pub fn scenarios_mut(&mut self) -> impl Iterator<Item = &mut ScenarioHot> {
        self.scenarios.values_mut()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ScenarioKey, parse_scenario};
    use crate::event::RecordBatch;
    use crate::pipeline::{JobSelection, Pipeline, PipelineOptions};
    use crate::scoring::FeatureValues;
    use std::sync::Arc;

    const T0: i64 = 1_767_225_600_000;

    /// Declared features go from events (parsed ahead, as sources do) through the pipeline's
    /// windows into the batch the scorer sees, and survive a snapshot taken mid-stream.
    #[test]
    fn declared_features_reach_the_batch() {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": 10, "window_slide_minutes": 10, "features": [
                {"name": "watch", "op": "sum", "field": "watch_time_ms", "actions": ["view"]},
                {"name": "users", "op": "distinct", "field": "user_id"},
                {"name": "src", "op": "last", "field": "props.src"}]}}}});
        let cfg = Arc::new(parse_scenario(&doc).unwrap());
        let key = ScenarioKey::new("t", "s");
        let new_pipeline = || {
            let mut p = Pipeline::new(PipelineOptions { jobs: JobSelection::ItemHotScore, ..PipelineOptions::default() });
            p.apply_config(&key, Some(cfg.clone()));
            p
        };
        let lines: Vec<String> = (0..60i64)
            .map(|i| {
                let action = if i % 3 == 0 { "click" } else { "view" };
                format!(
                    r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u{}","item_id":"i{}","action":"{action}","ts":{},"watch_time_ms":1.5,"props":{{"src":"s{i:02}"}}}}"#,
                    i % 4,
                    i % 2,
                    T0 + i * 9_000
                )
            })
            .collect();
        let batch_of = |lines: &[String]| {
            let mut b = RecordBatch::default();
            // Partition 0, so the scenario's state belongs to it (pipeline::state).
            lines.iter().enumerate().for_each(|(i, l)| b.push_at(l.as_bytes(), crate::event::Position { partition: 0, offset: i as i64 }));
            b.parse_ahead();
            b
        };
        let run = |p: &mut Pipeline, lines: &[String]| {
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            p.process(&batch_of(lines), &mut out, &mut rejects);
            assert!(rejects.is_empty(), "{rejects:?}");
        };
        let columns = |p: &mut Pipeline| {
            p.finish(&mut Vec::new());
            let s = p.hot_job().scenario(&key).unwrap();
            let b = s.last_batch();
            // The window closed, so its item names are gone: rows are told apart by their values.
            let mut rows: Vec<Vec<String>> = (0..b.item_count())
                .map(|k| {
                    b.features
                        .iter()
                        .map(|c| match &c.values {
                            FeatureValues::Number(v) => format!("{}={}", c.name, v[k]),
                            FeatureValues::Text(v) => format!("{}={}", c.name, v[k]),
                        })
                        .collect()
                })
                .collect();
            rows.sort();
            rows
        };
        let mut whole = new_pipeline();
        run(&mut whole, &lines);
        let want = columns(&mut whole);
        // Events 0..59 at 9 s apart fill minutes 0..8: one window [T0, T0 + 10 min). Item i0
        // has the even events (users u0, u2), 20 of its 30 are views; its last src is s58 (i1: s59).
        assert_eq!(
            want,
            vec![
                ["watch=30", "users=2", "src=s58"].map(String::from).to_vec(),
                ["watch=30", "users=2", "src=s59"].map(String::from).to_vec()
            ]
        );
        // The same events with a snapshot (through the codec) after the first 25.
        let mut first = new_pipeline();
        run(&mut first, &lines[..25]);
        let state = first.export_partition(0, 25);
        assert_eq!(state.scenarios.len(), 1);
        let bytes = crate::snapshot::codec::encode(&state).unwrap();
        let mut second = new_pipeline();
        second.import_partition(crate::snapshot::codec::decode(&bytes).unwrap(), 0);
        run(&mut second, &lines[25..]);
        assert_eq!(columns(&mut second), want);
    }
}
