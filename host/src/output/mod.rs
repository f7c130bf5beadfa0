//! Results the runtime emits (DESIGN §6). Every sink receives these same values; beside them,
//! the status rows a host reports about itself ([`status`]).

pub mod encoded_profile;
pub mod status;
pub mod stored_profile;

pub use encoded_profile::EncodedProfile;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::ScenarioKey;

/// One scored item of a hot list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredItem {
    pub item_id: String,
    pub score: f64,
}

/// One emitted window's hot list for one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotList {
    pub key: ScenarioKey,
    pub window_start: i64,
    pub window_end: i64,
    pub config_revision: i64,
    /// `name@version` of the plugin that scored the window, `None` for the built-in formula.
    pub plugin: Option<String>,
    /// Hot-list order: score descending, then item id.
    pub items: Vec<ScoredItem>,
}

/// How a shadow candidate's hot list compares with the live one of the same window, at depth
/// `k` (the live `top_n`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShadowComparison {
    pub k: usize,
    /// `|live_k ∩ shadow_k| / max(|live_k|, |shadow_k|)`.
    pub overlap_at_k: f64,
    /// Rank-biased overlap (p = 0.9): agreement at the top weighs most.
    pub rbo: f64,
    /// Relative score drift `|shadow - live| / |live|` of items in both lists.
    pub drift_p50: f64,
    pub drift_p90: f64,
    pub drift_max: f64,
}

/// A shadow candidate's hot list for one window: served nowhere, written beside the live one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowList {
    /// The candidate's list; `config_revision` is the document revision that holds the candidate.
    pub list: HotList,
    pub comparison: ShadowComparison,
}

/// A user's profile as written (DESIGN §4), decayed to `updated_at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserProfile {
    #[serde(skip)]
    pub key: ScenarioKey,
    pub user_id: String,
    /// Top interests (category or tag) by decayed score, descending.
    pub interests: Vec<Interest>,
    /// Most recent items first.
    pub recent_items: Vec<RecentItem>,
    /// Events per action since the profile's state was created.
    pub counts: BTreeMap<Arc<str>, u64>,
    /// Event time the profile was computed at, epoch ms.
    pub updated_at: i64,
    pub config_revision: i64,
    /// What a host needs to continue the profile when it reads it back (Redis only).
    #[serde(skip)]
    pub resume: stored_profile::ProfileResume,
    /// The scenario's half-life, from which the Redis key's lifetime follows.
    #[serde(skip)]
    pub interest_decay_days: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Interest {
    pub name: Arc<str>,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecentItem {
    pub item_id: Arc<str>,
    pub action: Arc<str>,
    pub ts: i64,
}

/// Watch time over a metrics window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WatchTime {
    /// Mean `watch_time_ms` of the events that carry one; `None` when none did.
    pub mean_ms: Option<f64>,
    pub total_ms: f64,
}

/// One item's metrics over a metrics window (`metrics.per_item`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemMetrics {
    pub item_id: String,
    /// Events of the item in the window, all actions.
    pub events: u64,
    pub counts: BTreeMap<String, u64>,
    /// Present when the scenario lists them, as for the scenario's metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctr: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvr: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_time_total_ms: Option<f64>,
}

/// The per-item part of a metrics window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowItemMetrics {
    /// The `per_item.top_n` items with the most events, most first (then by id).
    pub top: Vec<ItemMetrics>,
    /// Events no item was tracked for (the scenario's item state was full): when not 0, the
    /// ranking may miss items.
    pub untracked_events: u64,
}

/// One tumbling metrics window of one scenario (DESIGN §4).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsWindow {
    pub key: ScenarioKey,
    pub window_start: i64,
    pub window_end: i64,
    pub config_revision: i64,
    pub counts: BTreeMap<String, u64>,
    /// Present when listed in `metrics_to_calculate`; inner `None` on a zero denominator.
    pub ctr: Option<Option<f64>>,
    pub cvr: Option<Option<f64>>,
    pub watch_time: Option<WatchTime>,
    /// Present with `metrics.per_item`.
    pub items: Option<WindowItemMetrics>,
    /// The metrics plugin's values, when one is referenced and its call succeeded.
    pub plugin: Option<PluginMetrics>,
    /// The shadow candidate's values (`candidate.metrics.plugin`) on the same window, when its
    /// call succeeded: written beside the live ones, never in their place.
    pub shadow: Option<PluginMetrics>,
}

/// What a metrics plugin computed over a window (world `metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginMetrics {
    /// `name@version`.
    pub plugin: String,
    pub metrics: Vec<crate::plugin::PluginMetric>,
}

/// Anything the runtime emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Hot(HotList),
    Shadow(ShadowList),
    /// The scenario's candidate was removed (promoted, or edited away): from this window on
    /// there is no shadow list, and the last one is deleted from Redis.
    ShadowEnded {
        key: ScenarioKey,
        window_end: i64,
    },
    Profile(UserProfile),
    /// A profile as the runtime writes it: encoded once from the user's state, the same bytes
    /// as [`Output::Profile`] serialized (`PipelineOptions::encode_profiles`).
    EncodedProfile(EncodedProfile),
    Metrics(MetricsWindow),
}

impl Output {
    pub fn key(&self) -> &ScenarioKey {
        match self {
            Output::Hot(h) => &h.key,
            Output::Shadow(s) => &s.list.key,
            Output::ShadowEnded { key, .. } => key,
            Output::Profile(p) => &p.key,
            Output::EncodedProfile(p) => &p.key,
            Output::Metrics(m) => &m.key,
        }
    }

    /// The JSONL sink record (DESIGN §6).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Output::Hot(h) => serde_json::to_value(HotRecord::from(h)).unwrap_or_default(),
            Output::Shadow(s) => serde_json::to_value(ShadowRecord::from(s)).unwrap_or_default(),
            Output::ShadowEnded { key, window_end } => serde_json::json!({
                "kind": "shadow_end", "tenant_id": key.tenant_id.as_ref(), "scenario_id": key.scenario_id.as_ref(), "window_end": window_end,
            }),
            Output::Profile(p) => serde_json::to_value(ProfileRecord::from(p)).unwrap_or_default(),
            Output::EncodedProfile(p) => serde_json::from_slice(p.jsonl_line()).unwrap_or_default(),
            Output::Metrics(m) => {
                let mut v = serde_json::json!({
                    "kind": "metrics", "tenant_id": m.key.tenant_id.as_ref(), "scenario_id": m.key.scenario_id.as_ref(),
                    "window_start": m.window_start, "window_end": m.window_end, "config_revision": m.config_revision,
                    "counts": m.counts,
                });
                if let Some(ctr) = m.ctr {
                    v["ctr"] = serde_json::json!(ctr);
                }
                if let Some(cvr) = m.cvr {
                    v["cvr"] = serde_json::json!(cvr);
                }
                if let Some(w) = m.watch_time {
                    v["watch_time"] = serde_json::json!({"mean_ms": w.mean_ms, "total_ms": w.total_ms});
                }
                if let Some(items) = &m.items {
                    v["items"] = serde_json::to_value(&items.top).unwrap_or_default();
                    v["items_untracked_events"] = items.untracked_events.into();
                }
                if let Some(p) = &m.plugin {
                    v["plugin"] = p.plugin.as_str().into();
                    v["plugin_metrics"] = serde_json::to_value(&p.metrics).unwrap_or_default();
                }
                if let Some(p) = &m.shadow {
                    v["shadow_plugin"] = p.plugin.as_str().into();
                    v["shadow_plugin_metrics"] = serde_json::to_value(&p.metrics).unwrap_or_default();
                }
                v
            }
        }
    }
}

/// The JSONL sink record of a hot list (DESIGN §6 shape, a public contract).
#[derive(Serialize)]
pub struct HotRecord<'a> {
    pub kind: &'static str,
    pub tenant_id: &'a str,
    pub scenario_id: &'a str,
    pub window_start: i64,
    pub window_end: i64,
    pub config_revision: i64,
    pub plugin: Option<&'a str>,
    pub items: &'a [ScoredItem],
}

/// The JSONL sink record of a shadow candidate's list: the hot-list fields with
/// `"kind":"shadow"`, then the comparison with the live list of the same window.
#[derive(Serialize)]
pub struct ShadowRecord<'a> {
    #[serde(flatten)]
    pub list: HotRecord<'a>,
    #[serde(flatten)]
    pub comparison: ShadowComparison,
}

impl<'a> From<&'a ShadowList> for ShadowRecord<'a> {
    fn from(s: &'a ShadowList) -> Self {
        ShadowRecord { list: HotRecord { kind: "shadow", ..HotRecord::from(&s.list) }, comparison: s.comparison }
    }
}

/// The JSONL sink record of a profile.
#[derive(Serialize)]
pub struct ProfileRecord<'a> {
    pub kind: &'static str,
    pub tenant_id: &'a str,
    pub scenario_id: &'a str,
    pub user_id: &'a str,
    pub interests: &'a [Interest],
    pub recent_items: &'a [RecentItem],
    pub counts: &'a BTreeMap<Arc<str>, u64>,
    pub updated_at: i64,
    pub config_revision: i64,
}

impl<'a> From<&'a UserProfile> for ProfileRecord<'a> {
    fn from(p: &'a UserProfile) -> Self {
        ProfileRecord {
            kind: "profile",
            tenant_id: &p.key.tenant_id,
            scenario_id: &p.key.scenario_id,
            user_id: &p.user_id,
            interests: &p.interests,
            recent_items: &p.recent_items,
            counts: &p.counts,
            updated_at: p.updated_at,
            config_revision: p.config_revision,
        }
    }
}

impl<'a> From<&'a HotList> for HotRecord<'a> {
    fn from(h: &'a HotList) -> Self {
        HotRecord {
            kind: "hot",
            tenant_id: &h.key.tenant_id,
            scenario_id: &h.key.scenario_id,
            window_start: h.window_start,
            window_end: h.window_end,
            config_revision: h.config_revision,
            plugin: h.plugin.as_deref(),
            items: &h.items,
        }
    }
}
