//! completion-rate: a metrics plugin (world `metrics`). Per item,
//! `completion_rate = count(complete action) / count(start action)` over the window; items
//! without a start are skipped (no rate, rather than a division by zero). Scenario-level, the
//! same ratio over all items as `completion_rate`, when the window has starts.

use rtscore_guest::metrics::{Metric, Metrics, Window};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The action that completes an item (the numerator).
    pub complete: String,
    /// The action that starts an item (the denominator).
    pub start: String,
}

impl Default for Params {
    fn default() -> Self {
        Self { complete: "complete".into(), start: "play".into() }
    }
}

pub struct CompletionRate {
    complete: String,
    start: String,
}

fn valid_action(a: &str) -> bool {
    (1..=32).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

impl Metrics for CompletionRate {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        for a in [&p.complete, &p.start] {
            if !valid_action(a) {
                return Err(format!("action names must match [a-z_]{{1,32}}, got {a:?}"));
            }
        }
        if p.complete == p.start {
            return Err(format!("complete and start must differ, both are {:?}", p.start));
        }
        Ok(Self { complete: p.complete, start: p.start })
    }

    fn compute(&self, window: &Window<'_>, out: &mut Vec<Metric>) -> Result<(), String> {
        for item in window.items() {
            let starts = item.count(&self.start);
            if starts > 0 {
                out.push(item.metric("completion_rate", item.count(&self.complete) as f64 / starts as f64));
            }
        }
        let starts = window.count(&self.start);
        if starts > 0 {
            out.push(window.metric("completion_rate", window.count(&self.complete) as f64 / starts as f64));
        }
        Ok(())
    }
}

rtscore_guest::export_metrics!(CompletionRate);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::metrics::MetricsWindowBuilder;

    fn rates(got: &[Metric]) -> Vec<(Option<&str>, f64)> {
        got.iter().map(|m| (m.item_id.as_deref(), m.value)).collect()
    }

    #[test]
    fn per_item_and_scenario_rates_skip_items_without_starts() {
        let w = MetricsWindowBuilder::new()
            .event("a", "play", 4)
            .event("a", "complete", 3)
            .event("b", "play", 2)
            .event("c", "complete", 1)
            .event("c", "view", 5)
            .build();
        let got = w.run::<CompletionRate>("null").unwrap();
        assert!(got.iter().all(|m| m.name == "completion_rate"));
        assert_eq!(rates(&got), [(Some("a"), 0.75), (Some("b"), 0.0), (None, 4.0 / 6.0)], "c has no plays");
    }

    #[test]
    fn actions_are_params() {
        let w = MetricsWindowBuilder::new().event("a", "start", 2).event("a", "finish", 1).event("a", "play", 9).build();
        let got = w.run::<CompletionRate>(r#"{"complete": "finish", "start": "start"}"#).unwrap();
        assert_eq!(rates(&got), [(Some("a"), 0.5), (None, 0.5)]);
    }

    #[test]
    fn a_window_without_starts_gives_nothing() {
        let w = MetricsWindowBuilder::new().event("a", "complete", 2).build();
        assert!(w.run::<CompletionRate>("{}").unwrap().is_empty());
    }

    #[test]
    fn bad_params_are_refused() {
        let w = MetricsWindowBuilder::new().build();
        assert!(w.run::<CompletionRate>(r#"{"start": "Play"}"#).unwrap_err().contains("[a-z_]"));
        assert!(w.run::<CompletionRate>(r#"{"start": "complete"}"#).unwrap_err().contains("differ"));
        assert!(w.run::<CompletionRate>(r#"{"stat": "play"}"#).unwrap_err().contains("unknown field"));
    }
}
