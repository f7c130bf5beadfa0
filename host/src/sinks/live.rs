//! The live view: the latest results and status of every scenario, kept in memory for the
//! operator console and the admin API's status route. Fed by the runtime's output path like
//! any other sink; readers get a copy and a change signal.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::ScenarioKey;
use crate::output::status::{PipelineStats, ScenarioStatusRow, TenantStatusRow};
use crate::output::{HotList, Output, ShadowList};

/// Windows kept per scenario for the timeline.
pub const TIMELINE_LEN: usize = 24;

/// One emitted hot-list window, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowSummary {
    pub window_start: i64,
    pub window_end: i64,
    pub config_revision: i64,
    pub plugin: Option<String>,
    pub items: usize,
    pub top_item: Option<String>,
    pub top_score: Option<f64>,
}

/// Everything the console shows about one scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScenarioLive {
    pub status: Option<ScenarioStatusRow>,
    /// The latest window's hot list.
    pub hot: Option<HotList>,
    /// The running shadow candidate's latest list and its comparison with the live one
    /// (cleared when the candidate ends: promoted or edited away).
    pub shadow: Option<ShadowList>,
    /// Latest windows, oldest first.
    pub timeline: VecDeque<WindowSummary>,
    /// Events per second over the last status interval.
    pub events_per_s: f64,
    /// Events of this scenario refused by validation (counted when the raw event still names
    /// a scenario this host knows).
    pub rejected: u64,
    #[serde(skip)]
    last_events: Option<(u64, i64)>,
}

/// Host-wide counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostLive {
    pub events_in: u64,
    pub rejected: u64,
    pub late: u64,
    pub unknown_scenario: u64,
    /// Events refused by a memory quota.
    pub over_quota: u64,
    /// Window and profile state held (for a tenant: its own), at the last check.
    pub state_bytes: usize,
    /// `--repartition`: this host's shuffle stage (host-wide: admin only).
    pub shuffle: Option<crate::repartition::ShuffleStatus>,
}

#[derive(Debug, Default)]
struct State {
    scenarios: BTreeMap<ScenarioKey, ScenarioLive>,
    host: HostLive,
    /// Each tenant's state bytes, at the last check.
    tenant_state_bytes: BTreeMap<String, usize>,
}

/// Shared handle; cheap to clone.
#[derive(Clone)]
pub struct LiveView {
    state: Arc<RwLock<State>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for LiveView {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveView {
    pub fn new() -> Self {
        Self { state: Arc::default(), version: Arc::new(watch::channel(0).0) }
    }

    /// A receiver that sees a new value after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        // Every writer leaves the state whole, so a poisoned lock is still usable.
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Records emitted results (only hot lists are shown live).
    pub fn record(&self, out: &[Output]) {
        let mut any = false;
        let mut st = self.write();
        for o in out {
            match o {
                Output::Hot(h) => record_hot(st.scenarios.entry(h.key.clone()).or_default(), h),
                Output::Shadow(s) => st.scenarios.entry(s.list.key.clone()).or_default().shadow = Some(s.clone()),
                Output::ShadowEnded { key, .. } => {
                    if let Some(s) = st.scenarios.get_mut(key) {
                        s.shadow = None;
                    }
                }
                Output::Profile(_) | Output::EncodedProfile(_) | Output::Metrics(_) => continue,
            }
            any = true;
        }
        drop(st);
        if any {
            self.changed();
        }
    }

    /// Counts rejected raw events against the scenario they name, if this host knows it
    /// (unknown or unreadable names are only in the host-wide count).
    pub fn rejected<'a>(&self, raw_events: impl IntoIterator<Item = &'a [u8]>) {
        let mut st = self.write();
        let mut any = false;
        for raw in raw_events {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) else { continue };
            let (Some(t), Some(s)) = (v.get("tenant_id").and_then(|x| x.as_str()), v.get("scenario_id").and_then(|x| x.as_str())) else {
                continue;
            };
            if let Some(entry) = st.scenarios.get_mut(&ScenarioKey::new(t, s)) {
                entry.rejected += 1;
                any = true;
            }
        }
        drop(st);
        if any {
            self.changed();
        }
    }

    /// Records the status rows and host counters of one tick at wall time `now_ms`; scenarios
    /// no longer in the rows (deleted) are dropped.
    pub fn status(&self, stats: &PipelineStats, rows: &[ScenarioStatusRow], tenants: &[TenantStatusRow], now_ms: i64) {
        let mut st = self.write();
        st.host = HostLive {
            events_in: stats.events_in,
            rejected: stats.rejected,
            late: stats.late,
            unknown_scenario: stats.unknown_scenario,
            over_quota: stats.over_quota,
            state_bytes: tenants.iter().map(|t| t.state_bytes).sum(),
            shuffle: st.host.shuffle.take(),
        };
        st.tenant_state_bytes = tenants.iter().map(|t| (t.tenant_id.clone(), t.state_bytes)).collect();
        st.scenarios.retain(|k, _| rows.iter().any(|r| &r.key() == k));
        for r in rows {
            let s = st.scenarios.entry(r.key()).or_default();
            if let Some((events, at)) = s.last_events
                && now_ms > at
            {
                s.events_per_s = r.events.saturating_sub(events) as f64 * 1000.0 / (now_ms - at) as f64;
            }
            s.last_events = Some((r.events, now_ms));
            s.status = Some(r.clone());
        }
        drop(st);
        self.changed();
    }

    /// The scenarios `tenant` owns (all with `None`), in order.
    pub fn scenarios(&self, tenant: Option<&str>) -> Vec<(ScenarioKey, ScenarioLive)> {
        self.read()
            .scenarios
            .iter()
            .filter(|(k, _)| tenant.is_none_or(|t| &*k.tenant_id == t))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn scenario(&self, key: &ScenarioKey) -> Option<ScenarioLive> {
        self.read().scenarios.get(key).cloned()
    }

    /// The shuffle stage's counters of this tick (`--repartition`).
    pub fn set_shuffle(&self, shuffle: Option<crate::repartition::ShuffleStatus>) {
        self.write().host.shuffle = shuffle;
    }

    pub fn host(&self) -> HostLive {
        self.read().host.clone()
    }

    /// `tenant`'s window and profile state bytes at the last check.
    pub fn tenant_state_bytes(&self, tenant: &str) -> usize {
        self.read().tenant_state_bytes.get(tenant).copied().unwrap_or(0)
    }
}

fn record_hot(s: &mut ScenarioLive, h: &HotList) {
    s.timeline.push_back(WindowSummary {
        window_start: h.window_start,
        window_end: h.window_end,
        config_revision: h.config_revision,
        plugin: h.plugin.clone(),
        items: h.items.len(),
        top_item: h.items.first().map(|i| i.item_id.clone()),
        top_score: h.items.first().map(|i| i.score),
    });
    while s.timeline.len() > TIMELINE_LEN {
        s.timeline.pop_front();
    }
    s.hot = Some(h.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{ScoredItem, ShadowComparison};

    fn hot(end: i64, item: &str) -> Output {
        Output::Hot(HotList {
            key: ScenarioKey::new("t", "s"),
            window_start: end - 10,
            window_end: end,
            config_revision: 1,
            plugin: None,
            items: vec![ScoredItem { item_id: item.into(), score: 2.0 }],
        })
    }

    #[test]
    fn keeps_the_latest_hot_list_and_a_bounded_timeline() {
        let live = LiveView::new();
        let mut rx = live.subscribe();
        for end in 0..(TIMELINE_LEN as i64 + 5) {
            live.record(&[hot(end, &format!("i{end}"))]);
        }
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let s = live.scenario(&ScenarioKey::new("t", "s")).unwrap();
        assert_eq!(s.timeline.len(), TIMELINE_LEN);
        assert_eq!(s.hot.unwrap().items[0].item_id, format!("i{}", TIMELINE_LEN + 4));
        assert_eq!(live.scenarios(Some("other")).len(), 0);
        live.rejected([
            br#"{"tenant_id":"t","scenario_id":"s","action":"BAD"}"#.as_slice(),
            b"not json",
            br#"{"tenant_id":"x","scenario_id":"y"}"#,
        ]);
        assert_eq!(live.scenario(&ScenarioKey::new("t", "s")).unwrap().rejected, 1);
        assert_eq!(live.scenarios(None).len(), 1, "unknown scenarios are not added by rejects");
        // A status tick without the scenario (deleted) drops it.
        live.status(&PipelineStats::default(), &[], &[], 1);
        assert!(live.scenarios(None).is_empty());
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn keeps_the_latest_shadow_list_until_the_candidate_ends() {
        let live = LiveView::new();
        let key = ScenarioKey::new("t", "s");
        let Output::Hot(list) = hot(60, "cand") else { unreachable!() };
        let comparison = ShadowComparison { k: 10, overlap_at_k: 0.5, rbo: 0.4, drift_p50: 0.1, drift_p90: 0.2, drift_max: 0.3 };
        live.record(&[hot(60, "live"), Output::Shadow(ShadowList { list, comparison })]);
        let s = live.scenario(&key).unwrap();
        assert_eq!((s.hot.unwrap().items[0].item_id.as_str(), s.shadow.unwrap().list.items[0].item_id.as_str()), ("live", "cand"));
        let mut rx = live.subscribe();
        live.record(&[Output::ShadowEnded { key: key.clone(), window_end: 120 }]);
        assert!(rx.has_changed().unwrap(), "the console hears of the end");
        rx.mark_unchanged();
        assert!(live.scenario(&key).unwrap().shadow.is_none());
        assert_eq!(live.scenario(&key).unwrap().timeline.len(), 1);
    }
}
