//! A deliberately naive, event-by-event evaluation of DESIGN §4, the yardstick that tests and
//! backtests compare the bucketed pipeline against. Quadratic; never use it on a hot path.

use std::collections::BTreeMap;

use crate::config::HotScoreConfig;
use crate::scoring::builtin::MS_PER_HOUR;
use crate::scoring::topn;

/// One event as the reference sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RefEvent {
    pub item_id: String,
    pub action: String,
    pub ts: i64,
}

/// Every window (by end) that holds at least one event, with its hot list: the `top_n` items
/// with score > 0, by score descending then item id.
pub fn hot_lists(events: &[RefEvent], cfg: &HotScoreConfig) -> BTreeMap<i64, Vec<(String, f64)>> {
    let (w, s) = (cfg.window.size_ms, cfg.window.slide_ms);
    let mut ends = std::collections::BTreeSet::new();
    for e in events {
        let mut end = e.ts.div_euclid(s) * s + s;
        while end - w <= e.ts {
            ends.insert(end);
            end += s;
        }
    }
    let mut out = BTreeMap::new();
    for end in ends {
        let mut scores: BTreeMap<&str, f64> = BTreeMap::new();
        for e in events.iter().filter(|e| e.ts >= end - w && e.ts < end) {
            let decay = (-cfg.decay_lambda * (end - e.ts) as f64 / MS_PER_HOUR).exp();
            *scores.entry(&e.item_id).or_default() += cfg.weight(&e.action) * decay;
        }
        let top = topn::top_n(scores.iter().map(|(i, s)| (*s, *i)), cfg.top_n);
        out.insert(end, top.into_iter().map(|(s, i)| (i.to_string(), s)).collect());
    }
    out
}
