//! Per-item metrics of a metrics window (DESIGN §4, `metrics.per_item`): the events of each item
//! per action, kept per minute beside the scenario's totals, merged when the window closes and
//! ranked by events. Pure aggregation: no I/O, no plugin.
//!
//! State is bounded per scenario by [`MAX_ITEM_CELLS`] (item, minute) cells over the open
//! minutes. Past it, an event whose item has no cell in its minute yet is counted in the
//! scenario's totals only, and in the window's `items_untracked` (so a reader knows the item
//! ranking is partial); items already tracked keep counting. Replays hit the bound at the same
//! event, so outputs stay deterministic.

use std::collections::{BTreeMap, HashMap};

use crate::config::model::{MetricKind, MetricsConfig};
use crate::output::ItemMetrics;

use super::metrics_job::ratio_of;

/// Most (item, minute) cells one scenario's open minutes hold.
pub const MAX_ITEM_CELLS: usize = 100_000;

/// One item's events in one minute. Actions index the minute's action list (stable: a minute's
/// actions are only appended to).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ItemCell {
    pub counts: Vec<(u16, u64)>,
    pub watch_total_ms: f64,
}

impl ItemCell {
    pub fn add(&mut self, action: u16, watch: Option<f64>) {
        match self.counts.iter_mut().find(|(a, _)| *a == action) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((action, 1)),
        }
        if let Some(w) = watch {
            self.watch_total_ms += w;
        }
    }
}

/// One item over a whole window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemTotals {
    pub counts: BTreeMap<String, u64>,
    pub events: u64,
    pub watch_total_ms: f64,
}

/// Every tracked item of a window, merged from its minutes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowItems {
    pub items: HashMap<String, ItemTotals>,
    /// Events of the window no item cell could take (the scenario was at [`MAX_ITEM_CELLS`]).
    pub untracked: u64,
}

impl WindowItems {
    /// Adds one minute's cells; `actions` is that minute's action list.
    pub fn add_minute<'a>(&mut self, actions: &[(Box<str>, u64)], cells: impl Iterator<Item = (&'a str, &'a ItemCell)>, untracked: u64) {
        self.untracked += untracked;
        for (item, cell) in cells {
            let t = self.items.entry(item.to_string()).or_default();
            for &(a, n) in &cell.counts {
                if let Some((name, _)) = actions.get(a as usize) {
                    *t.counts.entry(name.to_string()).or_default() += n;
                    t.events += n;
                }
            }
            t.watch_total_ms += cell.watch_total_ms;
        }
    }

    /// Items by events descending, then id: the ranking `top_n` cuts and plugins receive.
    pub fn ranked(&self) -> Vec<(&str, &ItemTotals)> {
        let mut v: Vec<(&str, &ItemTotals)> = self.items.iter().map(|(k, t)| (k.as_str(), t)).collect();
        v.sort_by(|a, b| b.1.events.cmp(&a.1.events).then_with(|| a.0.cmp(b.0)));
        v
    }

    /// The built-in per-item metrics of the `top_n` items with the most events: counts, and the
    /// scenario's `ctr` / `cvr` / watch time total when it lists them.
    pub fn top(&self, top_n: usize, cfg: &MetricsConfig) -> Vec<ItemMetrics> {
        let wanted = &cfg.metrics_to_calculate;
        self.ranked()
            .into_iter()
            .take(top_n)
            .map(|(id, t)| ItemMetrics {
                item_id: id.to_string(),
                events: t.events,
                ctr: wanted.contains(&MetricKind::Ctr).then(|| ratio_of(&t.counts, &cfg.ctr)),
                cvr: wanted.contains(&MetricKind::Cvr).then(|| ratio_of(&t.counts, &cfg.cvr)),
                watch_time_total_ms: wanted.contains(&MetricKind::WatchTime).then_some(t.watch_total_ms),
                counts: t.counts.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_scenario;

    fn cell(counts: &[(u16, u64)], watch: f64) -> ItemCell {
        ItemCell { counts: counts.to_vec(), watch_total_ms: watch }
    }

    fn cfg(list: serde_json::Value) -> MetricsConfig {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s",
            "config": {"realtime_compute": {"metrics": {"metrics_to_calculate": list, "per_item": {"top_n": 2}}}}});
        parse_scenario(&doc).unwrap().metrics
    }

    #[test]
    fn minutes_merge_by_action_name_and_rank_by_events() {
        let mut w = WindowItems::default();
        // The two minutes index their actions differently.
        let m1: Vec<(Box<str>, u64)> = vec![("impression".into(), 4), ("click".into(), 1)];
        let m2: Vec<(Box<str>, u64)> = vec![("click".into(), 1), ("impression".into(), 2)];
        let (a, b) = (cell(&[(0, 3), (1, 1)], 100.0), cell(&[(0, 1)], 0.0));
        w.add_minute(&m1, [("a", &a), ("b", &b)].into_iter(), 0);
        let (a2, c) = (cell(&[(0, 1)], 50.0), cell(&[(1, 2)], 0.0));
        w.add_minute(&m2, [("a", &a2), ("c", &c)].into_iter(), 3);
        assert_eq!(w.untracked, 3);
        let ranked: Vec<(&str, u64)> = w.ranked().into_iter().map(|(k, t)| (k, t.events)).collect();
        assert_eq!(ranked, [("a", 5), ("c", 2), ("b", 1)]);
        let a = &w.items["a"];
        assert_eq!(a.counts, BTreeMap::from([("impression".to_string(), 3), ("click".to_string(), 2)]));
        assert_eq!(a.watch_total_ms, 150.0);
    }

    #[test]
    fn top_cuts_at_n_and_computes_the_scenario_ratios_per_item() {
        let mut w = WindowItems::default();
        let acts: Vec<(Box<str>, u64)> = vec![("impression".into(), 0), ("click".into(), 0), ("purchase".into(), 0)];
        let (a, b, c) = (cell(&[(0, 4), (1, 1)], 10.0), cell(&[(1, 2), (2, 1)], 0.0), cell(&[(0, 1)], 0.0));
        w.add_minute(&acts, [("a", &a), ("b", &b), ("c", &c)].into_iter(), 0);
        let top = w.top(2, &cfg(serde_json::json!(["ctr", "cvr", "watch_time"])));
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].item_id.as_str(), top[0].events, top[0].ctr, top[0].cvr), ("a", 5, Some(Some(0.25)), Some(Some(0.0))));
        assert_eq!(top[0].watch_time_total_ms, Some(10.0));
        assert_eq!((top[1].item_id.as_str(), top[1].ctr, top[1].cvr), ("b", Some(None), Some(Some(0.5))), "no impressions: null ctr");
        let bare = w.top(5, &cfg(serde_json::json!([])));
        assert_eq!(bare.len(), 3);
        assert_eq!((bare[2].ctr, bare[2].cvr, bare[2].watch_time_total_ms), (None, None, None));
    }
}
