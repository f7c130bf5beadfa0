//! Results the runtime emits (DESIGN §6). Every sink receives these same values.

use serde::Serialize;

use crate::config::ScenarioKey;

/// One scored item of a hot list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredItem {
    pub item_id: String,
    pub score: f64,
}

/// One emitted window's hot list for one scenario.
#[derive(Debug, Clone, PartialEq)]
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

/// Anything the runtime emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Hot(HotList),
}

impl Output {
    pub fn key(&self) -> &ScenarioKey {
        match self {
            Output::Hot(h) => &h.key,
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
