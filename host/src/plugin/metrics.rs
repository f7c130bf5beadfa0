//! World `metrics`: what a metrics plugin receives for one closed window ([`MetricsInput`]) and
//! the checks on what it returns ([`check_metrics`]). Pure data; the call is
//! `PluginInstance::compute_metrics`.

use std::collections::HashSet;

use serde::Serialize;

use super::bindings::v0_2_metrics::rtscore::scoring::types::{Metric as WitMetric, MetricsWindow as WitWindow};
use super::error::PluginError;

/// Scenario-level metrics a plugin may return per window, beside [`MAX_METRICS_PER_ITEM`] per
/// tracked item: bounds what one window writes to Redis.
pub const MAX_SCENARIO_METRICS: usize = 64;
pub const MAX_METRICS_PER_ITEM: usize = 8;
/// Longest metric name.
pub const MAX_METRIC_NAME: usize = 64;

/// One closed metrics window as a metrics plugin sees it (WIT `metrics-window`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsInput {
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub tenant_id: String,
    pub scenario_id: String,
    pub actions: Vec<String>,
    pub counts: Vec<u64>,
    pub watch_total_ms: f64,
    pub watch_events: u64,
    /// Most events first, then by id.
    pub item_ids: Vec<String>,
    /// One column per action, one count per item.
    pub item_counts: Vec<Vec<u64>>,
    pub item_watch_total_ms: Vec<f64>,
    pub items_untracked: u64,
}

impl MetricsInput {
    pub(crate) fn to_wit(&self) -> WitWindow {
        WitWindow {
            window_start_ms: self.window_start_ms,
            window_end_ms: self.window_end_ms,
            tenant_id: self.tenant_id.clone(),
            scenario_id: self.scenario_id.clone(),
            actions: self.actions.clone(),
            counts: self.counts.clone(),
            watch_total_ms: self.watch_total_ms,
            watch_events: self.watch_events,
            item_ids: self.item_ids.clone(),
            item_counts: self.item_counts.clone(),
            item_watch_total_ms: self.item_watch_total_ms.clone(),
            items_untracked: self.items_untracked,
        }
    }
}

/// One metric a plugin computed, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginMetric {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    pub value: f64,
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_METRIC_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// Checks a plugin's metrics against its window: names `[a-z0-9_.-]{1,64}`, finite values,
/// items of the window, no name twice for the same item, and at most
/// [`MAX_SCENARIO_METRICS`] + [`MAX_METRICS_PER_ITEM`] per item. One bad metric rejects all.
pub(crate) fn check_metrics(got: Vec<WitMetric>, window: &MetricsInput) -> Result<Vec<PluginMetric>, PluginError> {
    let cap = MAX_SCENARIO_METRICS + MAX_METRICS_PER_ITEM * window.item_ids.len();
    if got.len() > cap {
        return Err(PluginError::BadOutput(format!(
            "{} metrics for a window of {} items; at most {cap}",
            got.len(),
            window.item_ids.len()
        )));
    }
    let items: HashSet<&str> = window.item_ids.iter().map(String::as_str).collect();
    let mut seen: HashSet<(&str, Option<&str>)> = HashSet::with_capacity(got.len());
    for m in &got {
        let shown = || crate::text::cap_error(&m.name);
        if !valid_name(&m.name) {
            return Err(PluginError::BadOutput(format!("metric name {:?} must match [a-z0-9_.-]{{1,{MAX_METRIC_NAME}}}", shown())));
        }
        if !m.value.is_finite() {
            return Err(PluginError::BadOutput(format!("metric {} has the non-finite value {}", shown(), m.value)));
        }
        if let Some(item) = m.item_id.as_deref()
            && !items.contains(item)
        {
            return Err(PluginError::BadOutput(format!(
                "metric {} names item {:?}, which is not in the window",
                shown(),
                crate::text::cap_error(item)
            )));
        }
        if !seen.insert((&m.name, m.item_id.as_deref())) {
            return Err(PluginError::BadOutput(format!("metric {} appears twice for the same item", shown())));
        }
    }
    Ok(got.into_iter().map(|m| PluginMetric { name: m.name, item_id: m.item_id, value: m.value }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> MetricsInput {
        MetricsInput { item_ids: vec!["a".into(), "b".into()], ..MetricsInput::default() }
    }

    fn m(name: &str, item: Option<&str>, value: f64) -> WitMetric {
        WitMetric { name: name.into(), item_id: item.map(str::to_string), value }
    }

    #[test]
    fn good_metrics_pass_in_order() {
        let got = check_metrics(vec![m("completion_rate", Some("a"), 0.5), m("items.rated", None, 1.0)], &window()).unwrap();
        assert_eq!(got[0], PluginMetric { name: "completion_rate".into(), item_id: Some("a".into()), value: 0.5 });
        assert_eq!(got[1].item_id, None);
    }

    #[test]
    fn one_bad_metric_rejects_the_window() {
        let bad = |v: Vec<WitMetric>| check_metrics(v, &window()).unwrap_err().to_string();
        assert!(bad(vec![m("Rate", None, 1.0)]).contains("must match"));
        assert!(bad(vec![m("", None, 1.0)]).contains("must match"));
        assert!(bad(vec![m("r", Some("a"), f64::NAN)]).contains("non-finite"));
        assert!(bad(vec![m("r", Some("zz"), 1.0)]).contains("not in the window"));
        assert!(bad(vec![m("r", Some("a"), 1.0), m("r", Some("a"), 2.0)]).contains("twice"));
        let many: Vec<WitMetric> =
            (0..MAX_SCENARIO_METRICS + 2 * MAX_METRICS_PER_ITEM + 1).map(|k| m(&format!("m{k}"), None, 1.0)).collect();
        assert!(bad(many).contains("at most"));
        assert_eq!(check_metrics(vec![m("r", Some("a"), 1.0)], &window()).map(|v| v.len()), Ok(1));
    }
}
