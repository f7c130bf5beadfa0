//! Host bindings for WIT world `rtscore:scoring/scorer`, generated from `wit/` by `bindgen!`,
//! plus a borrowed view of the window batch so scoring lowers the host's columns into guest
//! memory directly instead of cloning them into the generated record first.

use wasmtime::component::{ComponentType, Lower};

use crate::scoring::WindowBatch as HostBatch;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "scorer",
    exports: { default: async },
});

/// `record window-batch`, borrowing the host's [`HostBatch`] columns. Field names and types
/// must match the WIT record: wasmtime type-checks it against the component on instantiation.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct WindowBatchView<'a> {
    #[component(name = "window-start-ms")]
    pub window_start_ms: i64,
    #[component(name = "window-end-ms")]
    pub window_end_ms: i64,
    pub actions: &'a [String],
    pub weights: &'a [f64],
    #[component(name = "decay-lambda")]
    pub decay_lambda: f64,
    #[component(name = "item-offsets")]
    pub item_offsets: &'a [u32],
    #[component(name = "row-action")]
    pub row_action: &'a [u16],
    #[component(name = "row-count")]
    pub row_count: &'a [u32],
    #[component(name = "row-age-mean-ms")]
    pub row_age_mean_ms: &'a [f64],
    #[component(name = "row-age-var-ms2")]
    pub row_age_var_ms2: &'a [f64],
}

impl<'a> From<&'a HostBatch> for WindowBatchView<'a> {
    fn from(b: &'a HostBatch) -> Self {
        Self {
            window_start_ms: b.window_start_ms,
            window_end_ms: b.window_end_ms,
            actions: &b.actions,
            weights: &b.weights,
            decay_lambda: b.decay_lambda,
            item_offsets: &b.item_offsets,
            row_action: &b.row_action,
            row_count: &b.row_count,
            row_age_mean_ms: &b.row_age_mean_ms,
            row_age_var_ms2: &b.row_age_var_ms2,
        }
    }
}

/// Parameters and results of the `score` export, as wasmtime's typed-function signature.
pub type ScoreParams<'a> = (WindowBatchView<'a>,);
pub type ScoreResults = (Result<Vec<f64>, String>,);
