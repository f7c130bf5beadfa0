//! Metrics plugins (WIT world `metrics`): write a [`Metrics`] in plain Rust, export it with
//! [`export_metrics!`](crate::export_metrics), test it natively with [`MetricsWindowBuilder`].
//!
//! ```
//! use rtscore_guest::NoParams;
//! use rtscore_guest::metrics::{Metric, Metrics, MetricsWindowBuilder, Window};
//!
//! /// Share of each item's events that are clicks.
//! pub struct ClickShare;
//!
//! impl Metrics for ClickShare {
//!     type Params = NoParams;
//!     fn new(_: NoParams) -> Result<Self, String> {
//!         Ok(Self)
//!     }
//!     fn compute(&self, window: &Window<'_>, out: &mut Vec<Metric>) -> Result<(), String> {
//!         for item in window.items() {
//!             out.push(item.metric("click_share", item.count("click") as f64 / item.events() as f64));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let window = MetricsWindowBuilder::new().event("a", "view", 3).event("a", "click", 1).build();
//! let got = window.run::<ClickShare>("null").unwrap();
//! assert_eq!(got[0].value, 0.25);
//! // In the plugin crate: rtscore_guest::export_metrics!(ClickShare);
//! ```

use serde::de::DeserializeOwned;

/// Generated from `wit/scoring.wit` (world `metrics`). Plugin authors never need it directly.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "metrics",
        pub_export_macro: true,
        export_macro_name: "__export_metrics_world",
        default_bindings_module: "rtscore_guest::metrics::bindings",
        runtime_path: "rtscore_guest::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// One closed metrics window exactly as it crosses the component boundary (WIT
/// `metrics-window`). Read it through [`Window`]; build one in tests with [`MetricsWindowBuilder`].
pub use bindings::rtscore::scoring::types::MetricsWindow as RawMetricsWindow;

/// One named value over the window (WIT `metric`): scenario-level with `item_id: None`.
pub use bindings::rtscore::scoring::types::Metric;

/// A metrics formula. One value is built per plugin instance from the scenario's
/// `metrics.plugin.params`, then computes metrics over every closed window of that scenario.
pub trait Metrics: Sized + 'static {
    /// Parameters, deserialized from `metrics.plugin.params` (absent or `null`: the default).
    type Params: DeserializeOwned + Default;

    /// Validates the parameters; an `Err` rejects the scenario's reference.
    fn new(params: Self::Params) -> Result<Self, String>;

    /// Pushes the window's metrics into `out` (empty on entry). Names match `[a-z0-9_.-]{1,64}`,
    /// values are finite, item metrics name items of the window; anything else, or an `Err`,
    /// drops the plugin's metrics for this window (the built-in ones are written regardless).
    fn compute(&self, window: &Window<'_>, out: &mut Vec<Metric>) -> Result<(), String>;
}

/// A checked view of a [`RawMetricsWindow`].
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    raw: &'a RawMetricsWindow,
}

impl<'a> Window<'a> {
    /// Checks the column lengths.
    pub fn new(raw: &'a RawMetricsWindow) -> Result<Self, String> {
        let items = raw.item_ids.len();
        if raw.counts.len() != raw.actions.len() || raw.item_counts.len() != raw.actions.len() {
            return Err(format!(
                "{} actions but {} counts and {} item columns",
                raw.actions.len(),
                raw.counts.len(),
                raw.item_counts.len()
            ));
        }
        if raw.item_counts.iter().any(|c| c.len() != items) || raw.item_watch_total_ms.len() != items {
            return Err(format!("item columns do not all hold {items} values"));
        }
        Ok(Self { raw })
    }

    /// The raw record (bounds, tenant, scenario, columns).
    pub fn raw(&self) -> &'a RawMetricsWindow {
        self.raw
    }

    /// Window bounds, epoch ms, `[start, end)`.
    pub fn bounds_ms(&self) -> (i64, i64) {
        (self.raw.window_start_ms, self.raw.window_end_ms)
    }

    /// Index of `action` in the window's action list.
    pub fn action_index(&self, action: &str) -> Option<usize> {
        self.raw.actions.iter().position(|a| a == action)
    }

    /// The scenario's events of `action` in the window (0 when none).
    pub fn count(&self, action: &str) -> u64 {
        self.action_index(action).map_or(0, |a| self.raw.counts[a])
    }

    /// Number of tracked items.
    pub fn len(&self) -> usize {
        self.raw.item_ids.len()
    }

    /// Whether no item was tracked.
    pub fn is_empty(&self) -> bool {
        self.raw.item_ids.is_empty()
    }

    /// The tracked items, most events first.
    pub fn items(&self) -> impl Iterator<Item = ItemView<'a>> + 'a {
        let raw = self.raw;
        (0..raw.item_ids.len()).map(move |index| ItemView { raw, index })
    }

    /// A scenario-level metric.
    pub fn metric(&self, name: &str, value: f64) -> Metric {
        Metric { name: name.to_string(), item_id: None, value }
    }
}

/// One tracked item of a [`Window`].
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    raw: &'a RawMetricsWindow,
    index: usize,
}

impl<'a> ItemView<'a> {
    /// The item's id.
    pub fn id(&self) -> &'a str {
        &self.raw.item_ids[self.index]
    }

    /// The item's events of `action` (0 when none).
    pub fn count(&self, action: &str) -> u64 {
        self.raw.actions.iter().position(|a| a == action).map_or(0, |a| self.raw.item_counts[a][self.index])
    }

    /// The item's events, all actions.
    pub fn events(&self) -> u64 {
        self.raw.item_counts.iter().map(|c| c[self.index]).sum()
    }

    /// Sum of the item's `watch_time_ms`.
    pub fn watch_total_ms(&self) -> f64 {
        self.raw.item_watch_total_ms[self.index]
    }

    /// A metric about this item.
    pub fn metric(&self, name: &str, value: f64) -> Metric {
        Metric { name: name.to_string(), item_id: Some(self.id().to_string()), value }
    }
}

/// Builds a metrics plugin from params JSON, as the host's `configure` call does.
pub fn build_metrics<M: Metrics>(params_json: &str) -> Result<M, String> {
    M::new(crate::parse_params(params_json)?)
}

/// Runs a metrics plugin on a raw window, as the host's `compute-metrics` call does.
pub fn run_metrics<M: Metrics>(plugin: &M, raw: &RawMetricsWindow) -> Result<Vec<Metric>, String> {
    let window = Window::new(raw)?;
    let mut out = Vec::new();
    plugin.compute(&window, &mut out)?;
    Ok(out)
}

/// Builds a [`RawMetricsWindow`] the way the host does: actions in name order, items most
/// events first (then by id).
#[derive(Debug, Clone, Default)]
pub struct MetricsWindowBuilder {
    start_ms: i64,
    end_ms: i64,
    /// (item, action, count), in call order.
    events: Vec<(String, String, u64)>,
    watch: Vec<(String, f64)>,
}

impl MetricsWindowBuilder {
    /// An empty 30-minute window ending at [`crate::testing::DEFAULT_WINDOW_END_MS`].
    pub fn new() -> Self {
        let end = crate::testing::DEFAULT_WINDOW_END_MS;
        Self { start_ms: end - 30 * 60_000, end_ms: end, ..Self::default() }
    }

    /// `count` events of `action` on `item`.
    pub fn event(mut self, item: &str, action: &str, count: u64) -> Self {
        self.events.push((item.into(), action.into(), count));
        self
    }

    /// Adds `ms` of watch time to `item`.
    pub fn watch(mut self, item: &str, ms: f64) -> Self {
        self.watch.push((item.into(), ms));
        self
    }

    /// The window record.
    pub fn build(self) -> TestMetricsWindow {
        let mut actions: Vec<String> = self.events.iter().map(|(_, a, _)| a.clone()).collect();
        actions.sort();
        actions.dedup();
        let mut items: Vec<(String, u64)> = Vec::new();
        for (item, _, n) in &self.events {
            match items.iter_mut().find(|(i, _)| i == item) {
                Some((_, total)) => *total += n,
                None => items.push((item.clone(), *n)),
            }
        }
        for (item, _) in &self.watch {
            if !items.iter().any(|(i, _)| i == item) {
                items.push((item.clone(), 0));
            }
        }
        items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let ids: Vec<String> = items.into_iter().map(|(i, _)| i).collect();
        let at = |item: &str| ids.iter().position(|i| i == item).unwrap_or(0);
        let mut item_counts = vec![vec![0u64; ids.len()]; actions.len()];
        let mut counts = vec![0u64; actions.len()];
        for (item, action, n) in &self.events {
            let a = actions.iter().position(|x| x == action).unwrap_or(0);
            item_counts[a][at(item)] += n;
            counts[a] += n;
        }
        let mut item_watch = vec![0.0; ids.len()];
        for (item, ms) in &self.watch {
            item_watch[at(item)] += ms;
        }
        TestMetricsWindow(RawMetricsWindow {
            window_start_ms: self.start_ms,
            window_end_ms: self.end_ms,
            tenant_id: "t".into(),
            scenario_id: "s".into(),
            actions,
            counts,
            watch_total_ms: item_watch.iter().sum(),
            watch_events: self.watch.len() as u64,
            item_ids: ids,
            item_counts,
            item_watch_total_ms: item_watch,
            items_untracked: 0,
        })
    }
}

/// A built test window.
#[derive(Debug, Clone, PartialEq)]
pub struct TestMetricsWindow(pub RawMetricsWindow);

impl TestMetricsWindow {
    /// Configures `M` with `params_json` and runs it on the window, as the host would.
    pub fn run<M: Metrics>(&self, params_json: &str) -> Result<Vec<Metric>, String> {
        run_metrics(&build_metrics::<M>(params_json)?, &self.0)
    }
}

/// Exports a [`Metrics`] as the plugin's component interface (`configure` and `compute-metrics`
/// of WIT world `rtscore:scoring/metrics`). Use it once, in the plugin crate's `lib.rs`.
#[macro_export]
#[rustfmt::skip]
macro_rules! export_metrics {
    ($metrics:ty) => {
        const _: () = {
            struct __RtscoreMetricsExport;

            impl $crate::metrics::bindings::Guest for __RtscoreMetricsExport {
                fn configure(params_json: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::configure_metrics::<$metrics>(&params_json)
                }

                fn compute_metrics(
                    window: $crate::metrics::RawMetricsWindow,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::metrics::Metric>, ::std::string::String> {
                    $crate::__private::compute_metrics::<$metrics>(&window)
                }
            }

            $crate::metrics::bindings::__export_metrics_world!(__RtscoreMetricsExport with_types_in $crate::metrics::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_lays_out_columns_like_the_host() {
        let w = MetricsWindowBuilder::new().event("b", "view", 1).event("a", "view", 2).event("a", "click", 1).watch("b", 500.0).build();
        let raw = &w.0;
        assert_eq!(raw.actions, ["click", "view"]);
        assert_eq!(raw.item_ids, ["a", "b"], "most events first");
        assert_eq!(raw.item_counts, vec![vec![1, 0], vec![2, 1]]);
        assert_eq!(raw.counts, [1, 3]);
        let view = Window::new(raw).unwrap();
        let a = view.items().next().unwrap();
        assert_eq!((a.id(), a.events(), a.count("click"), a.count("nope")), ("a", 3, 1, 0));
        assert_eq!(view.items().nth(1).unwrap().watch_total_ms(), 500.0);
        assert_eq!(view.count("view"), 3);
    }

    #[test]
    fn malformed_windows_are_refused() {
        let mut raw = MetricsWindowBuilder::new().event("a", "view", 1).build().0;
        raw.item_counts[0].push(3);
        assert!(Window::new(&raw).is_err());
    }
}
