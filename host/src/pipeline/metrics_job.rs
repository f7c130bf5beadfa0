//! The recommendation metrics job (DESIGN §4): per scenario, tumbling windows of
//! `window_size_minutes` with counts per action (always) and the listed metrics: `ctr` (click /
//! impression), `cvr` (purchase / click), `watch_time` (mean and total). The actions of `ctr`
//! and `cvr` are the scenario's (`metrics.ctr` / `metrics.cvr`, sums of listed actions). State is one bucket per
//! minute, so a window-size change applies at the next window end of the new size.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::item_metrics::{ItemCell, MAX_ITEM_CELLS, WindowItems};

use super::job_plugins::JobPlugins;
use super::scenario_map::{Route, ScenarioMap};
use super::stats::Routed;
use crate::config::model::{MetricKind, RatioActions};
use crate::config::{ScenarioConfig, ScenarioKey, ScenarioStatus, WindowGeometry};
use crate::event::Event;
use crate::output::{MetricsWindow, Output, PluginMetrics, WatchTime, WindowItemMetrics};
use crate::plugin::{JobPlugin, MetricsInput, PluginWorld};
use crate::window::BUCKET_MS;

/// Distinct actions counted per scenario minute.
const MAX_ACTIONS: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct MinuteTotals {
    counts: Vec<(Box<str>, u64)>,
    watch_total_ms: f64,
    watch_events: u64,
    /// Per item, when the scenario tracks items (`per_item` or a metrics plugin). Older
    /// snapshots have none.
    #[serde(default)]
    items: HashMap<Box<str>, ItemCell, ahash::RandomState>,
    /// Events of this minute no item cell took (the scenario was at `MAX_ITEM_CELLS`).
    #[serde(default)]
    items_untracked: u64,
}

/// One scenario's metrics state.
pub struct ScenarioMetrics {
    pub config: Arc<ScenarioConfig>,
    minutes: BTreeMap<i64, MinuteTotals>,
    max_ts: Option<i64>,
    closed_through: Option<i64>,
    pub windows_emitted: u64,
    pub late: u64,
    /// (item, minute) cells held over the open minutes, bounded by `MAX_ITEM_CELLS`.
    item_cells: usize,
    /// The scenario's metrics plugin lanes (`metrics.plugin`, a revision's waiting one, the
    /// candidate's), installed by the runtime.
    pub plugins: JobPlugins,
    /// Windows emitted without the plugin's metrics while a plugin was in force (its call
    /// failed, or it was not active).
    pub plugin_fallback_windows: u64,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The scenario's ratio metric over the window's counts: the summed numerator actions over the
/// summed denominator actions (null when the latter is 0).
pub(super) fn ratio_of(counts: &BTreeMap<String, u64>, actions: &RatioActions) -> Option<f64> {
    let sum = |list: &[String]| list.iter().map(|a| counts.get(a).copied().unwrap_or(0)).sum::<u64>();
    ratio(sum(&actions.numerator), sum(&actions.denominator))
}

impl ScenarioMetrics {
    fn new(config: Arc<ScenarioConfig>) -> Self {
        let plugins = JobPlugins::new(&config, PluginWorld::Metrics);
        Self {
            config,
            minutes: BTreeMap::new(),
            max_ts: None,
            closed_through: None,
            windows_emitted: 0,
            late: 0,
            item_cells: 0,
            plugins,
            plugin_fallback_windows: 0,
        }
    }

    /// Whether events are also counted per item: for `per_item`, and for a plugin in force,
    /// waiting or in shadow (which receives every tracked item).
    fn tracks_items(&self) -> bool {
        self.config.metrics.per_item.is_some() || self.plugins.any_referenced()
    }

    fn geometry(&self) -> WindowGeometry {
        let w = self.config.metrics.window_size_ms;
        WindowGeometry { size_ms: w, slide_ms: w }
    }

    fn on_event(&mut self, ev: &Event<'_>) -> bool {
        let g = self.geometry();
        if self.closed_through.is_some_and(|c| ev.ts < g.next_end_after(c) - g.size_ms) {
            self.late += 1;
            return false;
        }
        let tracks_items = self.tracks_items();
        let m = self.minutes.entry(ev.ts.div_euclid(BUCKET_MS)).or_default();
        let action = match m.counts.iter().position(|(a, _)| **a == *ev.action) {
            Some(i) => {
                m.counts[i].1 += 1;
                Some(i)
            }
            None if m.counts.len() < MAX_ACTIONS => {
                m.counts.push((ev.action.as_ref().into(), 1));
                Some(m.counts.len() - 1)
            }
            None => None,
        };
        if tracks_items && let Some(a) = action {
            match m.items.get_mut(&*ev.item_id) {
                Some(cell) => cell.add(a as u16, ev.watch_time_ms),
                None if self.item_cells < MAX_ITEM_CELLS => {
                    self.item_cells += 1;
                    m.items.entry(ev.item_id.as_ref().into()).or_default().add(a as u16, ev.watch_time_ms);
                }
                None => m.items_untracked += 1,
            }
        }
        if let Some(w) = ev.watch_time_ms {
            m.watch_total_ms += w;
            m.watch_events += 1;
        }
        self.max_ts = Some(self.max_ts.map_or(ev.ts, |t| t.max(ev.ts)));
        true
    }

    fn window(&self, end: i64) -> (MetricsWindow, WindowItems) {
        let g = self.geometry();
        let start = end - g.size_ms;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let (mut watch_total, mut watch_n) = (0.0, 0u64);
        let mut items = WindowItems::default();
        for m in self.minutes.range(start.div_euclid(BUCKET_MS)..end.div_euclid(BUCKET_MS)).map(|(_, m)| m) {
            for (a, n) in &m.counts {
                *counts.entry(a.to_string()).or_default() += n;
            }
            watch_total += m.watch_total_ms;
            watch_n += m.watch_events;
            items.add_minute(&m.counts, m.items.iter().map(|(k, c)| (&**k, c)), m.items_untracked);
        }
        let metrics = &self.config.metrics;
        let wanted = &metrics.metrics_to_calculate;
        let window = MetricsWindow {
            key: self.config.key.clone(),
            window_start: start,
            window_end: end,
            config_revision: self.config.revision,
            ctr: wanted.contains(&MetricKind::Ctr).then(|| ratio_of(&counts, &metrics.ctr)),
            cvr: wanted.contains(&MetricKind::Cvr).then(|| ratio_of(&counts, &metrics.cvr)),
            watch_time: wanted
                .contains(&MetricKind::WatchTime)
                .then_some(WatchTime { mean_ms: (watch_n > 0).then(|| watch_total / watch_n as f64), total_ms: watch_total }),
            counts,
            items: metrics.per_item.map(|p| WindowItemMetrics { top: items.top(p.top_n, metrics), untracked_events: items.untracked }),
            plugin: None,
            shadow: None,
        };
        (window, items)
    }

    /// The plugin's metrics of a window and its shadow candidate's, each if a plugin is active
    /// and its call succeeds; the built-in metrics are written either way (a plugin logs and
    /// records its own failure).
    fn plugin_metrics(&mut self, window: &MetricsWindow, items: &WindowItems) -> (Option<PluginMetrics>, Option<PluginMetrics>) {
        let live_on = self.plugins.in_force().is_some() && self.plugins.live.is_active();
        let shadow_on = self.plugins.shadow.as_ref().is_some_and(|(_, p)| p.is_active());
        if !live_on && !shadow_on {
            return (None, None);
        }
        let input = metrics_input(window, items, self.watch(window.window_start, window.window_end));
        let live = if live_on { call_metrics(&mut self.plugins.live, &input) } else { None };
        let shadow = self.plugins.shadow.as_mut().and_then(|(_, p)| call_metrics(p, &input));
        (live, shadow)
    }

    /// The window's watch time total and events, whether or not `watch_time` is listed.
    fn watch(&self, start: i64, end: i64) -> (f64, u64) {
        self.minutes
            .range(start.div_euclid(BUCKET_MS)..end.div_euclid(BUCKET_MS))
            .fold((0.0, 0), |(t, n), (_, m)| (t + m.watch_total_ms, n + m.watch_events))
    }

    fn emit_due(&mut self, watermark: i64, out: &mut Vec<Output>) {
        let g = self.geometry();
        while let Some((&first, _)) = self.minutes.first_key_value() {
            let mut end = g.first_end_containing(first * BUCKET_MS);
            if let Some(c) = self.closed_through {
                end = end.max(g.next_end_after(c));
            }
            if end > watermark {
                break;
            }
            // A revision waiting for this window end brings its plugin in now.
            self.plugins.switch_due(end);
            let (mut window, items) = self.window(end);
            (window.plugin, window.shadow) = self.plugin_metrics(&window, &items);
            if window.plugin.is_none() && self.plugins.in_force().is_some() {
                self.plugin_fallback_windows += 1;
            }
            out.push(Output::Metrics(window));
            self.windows_emitted += 1;
            self.closed_through = Some(end);
            self.drop_minutes_before(end);
        }
        // As for hot windows: nothing is closed before the scenario's first accepted event.
        if watermark != i64::MAX && self.max_ts.is_some() {
            let last_end = watermark.div_euclid(g.slide_ms) * g.slide_ms;
            if self.closed_through.is_none_or(|c| c < last_end) {
                self.closed_through = Some(last_end);
                self.drop_minutes_before(last_end);
            }
        }
    }

    /// Forgets the minutes before `t`, releasing their item cells.
    fn drop_minutes_before(&mut self, t: i64) {
        let kept = self.minutes.split_off(&t.div_euclid(BUCKET_MS));
        let dropped = std::mem::replace(&mut self.minutes, kept);
        self.item_cells -= dropped.values().map(|m| m.items.len()).sum::<usize>().min(self.item_cells);
    }
}

/// One call of a metrics plugin: its values, or `None` when it is not active or failed.
fn call_metrics(plugin: &mut JobPlugin, input: &MetricsInput) -> Option<PluginMetrics> {
    let mut label = String::new();
    let result = plugin.call(|instance| {
        label = instance.label().to_string();
        instance.compute_metrics(input)
    })?;
    result.ok().map(|metrics| PluginMetrics { plugin: label, metrics })
}

/// A window as a metrics plugin sees it: actions in name order, items most events first.
fn metrics_input(window: &MetricsWindow, items: &WindowItems, (watch_total_ms, watch_events): (f64, u64)) -> MetricsInput {
    let actions: Vec<String> = window.counts.keys().cloned().collect();
    let ranked = items.ranked();
    let item_counts = actions.iter().map(|a| ranked.iter().map(|(_, t)| t.counts.get(a).copied().unwrap_or(0)).collect()).collect();
    MetricsInput {
        window_start_ms: window.window_start,
        window_end_ms: window.window_end,
        tenant_id: window.key.tenant_id.to_string(),
        scenario_id: window.key.scenario_id.to_string(),
        counts: actions.iter().map(|a| window.counts[a]).collect(),
        actions,
        watch_total_ms,
        watch_events,
        item_ids: ranked.iter().map(|(id, _)| id.to_string()).collect(),
        item_counts,
        item_watch_total_ms: ranked.iter().map(|(_, t)| t.watch_total_ms).collect(),
        items_untracked: items.untracked,
    }
}

/// All scenarios' metrics.
#[derive(Default)]
pub struct MetricsJob {
    scenarios: ScenarioMap<ScenarioMetrics>,
}

impl MetricsJob {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new metrics list applies to the next emitted window; a new window size to the next
    /// window end of the new size.
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        match cfg.filter(|c| c.status == ScenarioStatus::Active && c.metrics.enabled) {
            Some(cfg) => self.scenarios.upsert(
                key,
                |s| {
                    s.plugins.apply(&cfg, s.closed_through);
                    s.config = cfg.clone();
                },
                || ScenarioMetrics::new(cfg.clone()),
            ),
            None => self.scenarios.remove(key),
        }
    }

    /// Adds one event to its scenario's open minute.
    pub fn on_event(&mut self, ev: &Event<'_>, route: Route) -> Routed {
        let Some(s) = self.scenarios.get_mut_routed(route, &ev.tenant_id, &ev.scenario_id) else {
            return Routed::NotHere;
        };
        s.on_event(ev);
        Routed::Counted
    }

    /// Emits every window of `tenant` its watermark has passed.
    pub fn advance(&mut self, tenant: &str, watermark: i64, out: &mut Vec<Output>) {
        for s in self.scenarios.tenant_values_mut(tenant) {
            s.emit_due(watermark, out);
        }
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.scenarios.has_tenant(tenant)
    }

    pub fn finish(&mut self, out: &mut Vec<Output>) {
        for s in self.scenarios.values_mut() {
            s.emit_due(i64::MAX, out);
        }
    }

    pub fn scenario(&self, key: &ScenarioKey) -> Option<&ScenarioMetrics> {
        self.scenarios.get(&key.tenant_id, &key.scenario_id)
    }

    pub fn scenario_mut(&mut self, key: &ScenarioKey) -> Option<&mut ScenarioMetrics> {
        self.scenarios.get_mut(&key.tenant_id, &key.scenario_id)
    }

    pub fn scenarios(&self) -> impl Iterator<Item = &ScenarioMetrics> {
        self.scenarios.values()
    }

    pub fn scenarios_mut(&mut self) -> impl Iterator<Item = &mut ScenarioMetrics> {
        self.scenarios.values_mut()
    }

    /// A copy of the scenario's open minutes, if it has a metrics config.
    pub fn export_state(&self, key: &ScenarioKey) -> Option<MetricsState> {
        let s = self.scenario(key)?;
        Some(MetricsState { minutes: s.minutes.clone(), max_ts: s.max_ts, closed_through: s.closed_through })
    }

    /// Replaces the scenario's open minutes (`None`: empty). False when it has no config here.
    pub fn restore_state(&mut self, key: &ScenarioKey, state: Option<MetricsState>) -> bool {
        let Some(s) = self.scenarios.get_mut(&key.tenant_id, &key.scenario_id) else { return false };
        let state = state.unwrap_or_default();
        s.minutes = state.minutes;
        s.item_cells = s.minutes.values().map(|m| m.items.len()).sum();
        s.max_ts = state.max_ts;
        s.closed_through = state.closed_through;
        true
    }
}

/// What a snapshot carries of one scenario's metrics state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MetricsState {
    minutes: BTreeMap<i64, MinuteTotals>,
    max_ts: Option<i64>,
    closed_through: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_scenario;
    use crate::event::parse_event;

    const T0: i64 = 1_767_225_600_000;
    const MIN: i64 = 60_000;

    fn cfg(window: i64, list: serde_json::Value, revision: i64) -> Arc<ScenarioConfig> {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": revision,
            "config": {"realtime_compute": {"metrics": {"window_size_minutes": window, "metrics_to_calculate": list}}}});
        Arc::new(parse_scenario(&doc).unwrap())
    }

    fn ev(action: &str, ts: i64, watch: Option<f64>) -> String {
        let w = watch.map(|w| format!(r#","watch_time_ms":{w}"#)).unwrap_or_default();
        format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"{action}","ts":{ts}{w}}}"#)
    }

    fn run(job: &mut MetricsJob, lines: &[String], out: &mut Vec<Output>) {
        for l in lines {
            let ev = parse_event(l.as_bytes()).unwrap();
            job.on_event(&ev, Route::of(&ev.tenant_id, &ev.scenario_id));
            job.advance("t", ev.ts, out);
        }
    }

    fn windows(out: Vec<Output>) -> Vec<MetricsWindow> {
        out.into_iter().filter_map(|o| if let Output::Metrics(m) = o { Some(m) } else { None }).collect()
    }

    #[test]
    fn ratios_counts_and_watch_time() {
        let c = cfg(30, serde_json::json!(["ctr", "cvr", "watch_time"]), 1);
        let mut job = MetricsJob::new();
        job.apply_config(&c.key, Some(c.clone()));
        let mut lines: Vec<String> = (0..10).map(|k| ev("impression", T0 + k * MIN, None)).collect();
        lines.extend([ev("click", T0 + MIN, None), ev("click", T0 + 2 * MIN, None), ev("purchase", T0 + 3 * MIN, None)]);
        lines.extend([ev("view", T0 + 4 * MIN, Some(1000.0)), ev("view", T0 + 5 * MIN, Some(3000.0)), ev("view", T0 + 6 * MIN, None)]);
        // The next window: clicks without impressions.
        lines.push(ev("click", T0 + 31 * MIN, None));
        let mut out = Vec::new();
        run(&mut job, &lines, &mut out);
        job.finish(&mut out);
        let w = windows(out);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].window_start, w[0].window_end), (T0, T0 + 30 * MIN));
        assert_eq!(w[0].counts["impression"], 10);
        assert_eq!(w[0].ctr, Some(Some(0.2)));
        assert_eq!(w[0].cvr, Some(Some(0.5)));
        assert_eq!(w[0].watch_time, Some(WatchTime { mean_ms: Some(2000.0), total_ms: 4000.0 }));
        assert_eq!(w[1].ctr, Some(None), "zero impressions give null, not NaN");
        assert_eq!(w[1].cvr, Some(Some(0.0)));
        assert_eq!(w[1].watch_time, Some(WatchTime { mean_ms: None, total_ms: 0.0 }));
    }

    #[test]
    fn metrics_list_change_applies_to_the_next_window() {
        let c1 = cfg(10, serde_json::json!(["ctr", "cvr", "watch_time"]), 1);
        let mut job = MetricsJob::new();
        job.apply_config(&c1.key, Some(c1.clone()));
        let mut out = Vec::new();
        run(&mut job, &[ev("impression", T0, None), ev("click", T0 + 11 * MIN, None)], &mut out);
        job.apply_config(&c1.key, Some(cfg(10, serde_json::json!(["cvr"]), 2)));
        run(&mut job, &[ev("impression", T0 + 21 * MIN, None)], &mut out);
        job.finish(&mut out);
        let w = windows(out);
        assert_eq!(w.len(), 3);
        assert!(w[0].ctr.is_some() && w[0].watch_time.is_some());
        assert_eq!((w[1].ctr, w[1].watch_time, w[1].config_revision), (None, None, 2));
        assert!(w[1].cvr.is_some());
        assert_eq!(w[1].counts["click"], 1, "counts are always computed");
    }

    #[test]
    fn ctr_and_cvr_actions_come_from_the_scenario() {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"metrics": {
            "window_size_minutes": 10,
            "ctr": {"numerator": ["tap", "click"], "denominator": ["expose"]},
            "cvr": {"numerator": ["order"]}}}}});
        let c = Arc::new(parse_scenario(&doc).unwrap());
        assert_eq!(c.metrics.cvr, RatioActions::new(&["order"], &["click"]), "a missing side keeps the seed's default");
        let mut job = MetricsJob::new();
        job.apply_config(&c.key, Some(c.clone()));
        let mut lines: Vec<String> = (0..8).map(|k| ev("expose", T0 + k * 1000, None)).collect();
        lines.extend([ev("tap", T0, None), ev("click", T0, None), ev("order", T0, None), ev("impression", T0, None)]);
        let mut out = Vec::new();
        run(&mut job, &lines, &mut out);
        job.finish(&mut out);
        let w = &windows(out)[0];
        assert_eq!(w.ctr, Some(Some(0.25)), "(tap + click) / expose; impressions are not counted");
        assert_eq!(w.cvr, Some(Some(1.0)), "order / click");
    }

    #[test]
    fn ratio_actions_are_validated_like_action_names() {
        let bad = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"metrics": {
            "ctr": {"numerator": ["Click"], "denominator": []}, "cvr": "purchase"}}}});
        let e = parse_scenario(&bad).unwrap_err();
        let paths: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "config.realtime_compute.metrics.ctr.numerator[0]",
                "config.realtime_compute.metrics.ctr.denominator",
                "config.realtime_compute.metrics.cvr"
            ]
        );
        let seed = cfg(30, serde_json::json!(["ctr"]), 1);
        assert_eq!((seed.metrics.ctr.clone(), seed.metrics.cvr.clone()), (RatioActions::default_ctr(), RatioActions::default_cvr()));
    }

    fn item_ev(item: &str, action: &str, ts: i64) -> String {
        format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"{item}","action":"{action}","ts":{ts}}}"#)
    }

    fn per_item_cfg(top_n: i64) -> Arc<ScenarioConfig> {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"metrics": {
            "window_size_minutes": 10, "metrics_to_calculate": ["ctr"], "per_item": {"top_n": top_n}}}}});
        Arc::new(parse_scenario(&doc).unwrap())
    }

    #[test]
    fn per_item_metrics_rank_the_window_items_across_minutes() {
        let c = per_item_cfg(2);
        let mut job = MetricsJob::new();
        job.apply_config(&c.key, Some(c.clone()));
        let mut lines = Vec::new();
        for k in 0..4 {
            lines.push(item_ev("a", "impression", T0 + k * MIN));
        }
        lines.extend([item_ev("a", "click", T0 + 5 * MIN), item_ev("b", "impression", T0), item_ev("b", "click", T0 + 9 * MIN)]);
        lines.push(item_ev("c", "impression", T0 + 2 * MIN));
        // Next window: only c.
        lines.push(item_ev("c", "click", T0 + 11 * MIN));
        let mut out = Vec::new();
        run(&mut job, &lines, &mut out);
        job.finish(&mut out);
        let w = windows(out);
        let items = w[0].items.as_ref().unwrap();
        assert_eq!(items.untracked_events, 0);
        let got: Vec<(&str, u64, Option<Option<f64>>)> = items.top.iter().map(|i| (i.item_id.as_str(), i.events, i.ctr)).collect();
        assert_eq!(got, [("a", 5, Some(Some(0.25))), ("b", 2, Some(Some(1.0)))], "top 2 by events; c is cut");
        assert_eq!(items.top[0].cvr, None, "cvr is not listed");
        let next = w[1].items.as_ref().unwrap();
        assert_eq!((next.top.len(), next.top[0].item_id.as_str(), next.top[0].ctr), (1, "c", Some(None)));
        assert_eq!(job.scenario(&c.key).unwrap().item_cells, 0, "closed minutes release their cells");
    }

    #[test]
    fn per_item_state_is_bounded_and_says_what_it_missed() {
        let c = per_item_cfg(10);
        let mut job = MetricsJob::new();
        job.apply_config(&c.key, Some(c.clone()));
        let mut out = Vec::new();
        run(&mut job, &[item_ev("a", "view", T0)], &mut out);
        // As if the open minutes already held the bound's cells.
        job.scenarios.get_mut("t", "s").unwrap().item_cells = MAX_ITEM_CELLS;
        run(&mut job, &[item_ev("a", "view", T0), item_ev("new", "view", T0), item_ev("new", "view", T0 + MIN)], &mut out);
        job.finish(&mut out);
        let w = &windows(out)[0];
        assert_eq!(w.counts["view"], 4, "the scenario's totals count every event");
        let items = w.items.as_ref().unwrap();
        assert_eq!(items.top.iter().map(|i| (i.item_id.as_str(), i.events)).collect::<Vec<_>>(), [("a", 2)]);
        assert_eq!(items.untracked_events, 2);
    }

    #[test]
    fn without_per_item_no_items_are_kept() {
        let c = cfg(10, serde_json::json!([]), 1);
        let mut job = MetricsJob::new();
        job.apply_config(&c.key, Some(c.clone()));
        let mut out = Vec::new();
        run(&mut job, &[item_ev("a", "view", T0)], &mut out);
        assert_eq!(job.scenario(&c.key).unwrap().item_cells, 0);
        job.finish(&mut out);
        assert_eq!(windows(out)[0].items, None);
    }

    #[test]
    fn late_events_are_counted_not_added() {
        let c = cfg(10, serde_json::json!([]), 1);
        let mut job = MetricsJob::new();
        job.apply_config(&c.key, Some(c.clone()));
        let mut out = Vec::new();
        run(&mut job, &[ev("view", T0, None), ev("view", T0 + 25 * MIN, None), ev("view", T0 + MIN, None)], &mut out);
        assert_eq!(job.scenario(&c.key).unwrap().late, 1);
        assert_eq!(windows(out)[0].counts["view"], 1);
    }
}
