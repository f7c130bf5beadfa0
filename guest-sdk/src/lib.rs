//! Guest SDK for rtscore scoring plugins: write a [`Scorer`] in plain Rust, export it with
//! [`export_scorer!`], build for `wasm32-wasip2`. It targets WIT `rtscore:scoring@0.2.0`
//! ([`WIT_VERSION`]).
//!
//! A scorer writes one scoring function: [`Scorer::score_item`] (one item at a time) or
//! [`Scorer::score`] (the whole window, for formulas that look across items).
//!
//! ```
//! use rtscore_guest::{Item, NoParams, Scorer};
//!
//! pub struct DecayWeighted;
//!
//! impl Scorer for DecayWeighted {
//!     type Params = NoParams;
//!     fn new(_: NoParams) -> Result<Self, String> {
//!         Ok(Self)
//!     }
//!     fn score_item(&self, item: &Item<'_>) -> f64 {
//!         item.decayed_score()
//!     }
//! }
//!
//! rtscore_guest::export_scorer!(DecayWeighted);
//! ```
//!
//! Metrics plugins (world `metrics`) implement [`metrics::Metrics`] and export it with
//! [`export_metrics!`]; see [`metrics`]. Profile plugins (world `profile`) implement
//! [`profile::Profiler`] and export it with [`export_profiler!`]; see [`profile`].
//!
//! The same scorer runs natively in unit tests through [`testing`]. Everything that touches the
//! component ABI lives in this crate; see `docs/plugins.md` for the whole loop.
#![deny(missing_docs)]

// The bindings and the export macro name this crate by path; this makes the path resolve inside
// the crate too (its own tests and doc tests).
extern crate self as rtscore_guest;

mod batch;
pub mod decay;
pub mod math;
pub mod metrics;
pub mod profile;
pub mod testing;
pub mod time;

pub use batch::{Batch, Feature, Item, Items, Row, Rows};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The `rtscore:scoring` package version this SDK builds plugins against.
pub const WIT_VERSION: &str = "0.2.0";

/// Generated from `wit/scoring.wit` (world `scorer`). Plugin authors never need it directly.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "scorer",
        pub_export_macro: true,
        export_macro_name: "__export_scorer_world",
        default_bindings_module: "rtscore_guest::bindings",
        runtime_path: "rtscore_guest::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// The window batch exactly as it crosses the component boundary (WIT `window-batch`). Read it
/// through [`Batch`]; build one in tests with [`testing::BatchBuilder`].
pub use bindings::rtscore::scoring::types::WindowBatch as RawBatch;

/// One declared feature's column as it crosses the component boundary (WIT `feature-column`).
/// Read it through [`Batch::feature`] or [`Item::feature`].
pub use bindings::rtscore::scoring::types::{FeatureColumn as RawFeatureColumn, FeatureValues as RawFeatureValues};

/// A scoring formula. One value is built per plugin instance from the scenario's
/// `plugin.params`, then scores every emitted window of that scenario.
///
/// Write exactly one of [`Scorer::score_item`] and [`Scorer::score`]: each has a default, the
/// one in terms of the other. `score_item` is the simple case; `score` sees the whole window
/// at once. A scorer that writes neither panics on its first window (a trap the host reports).
pub trait Scorer: Sized + 'static {
    /// Parameters, deserialized from the scenario's `plugin.params` JSON. Absent or `null`
    /// params give `Default::default()`; put `#[serde(default, deny_unknown_fields)]` on the
    /// struct so missing fields take defaults and typos are rejected.
    type Params: DeserializeOwned + Default;

    /// Validates the parameters; an `Err` rejects the scenario's plugin reference (the host
    /// reports it and keeps scoring with the last good module or the built-in formula).
    fn new(params: Self::Params) -> Result<Self, String>;

    /// The score of one item of the window. Scores `<= 0` keep the item off the hot list;
    /// NaN or infinite scores make the host reject the whole batch.
    ///
    /// Write this one, or [`Scorer::score`] instead: the default is only for scorers that
    /// write `score` and never call it.
    fn score_item(&self, item: &Item<'_>) -> f64 {
        let _ = item;
        // A programming error of the plugin, found by its first unit test.
        panic!("rtscore_guest::Scorer: implement `score_item` (one item) or `score` (the whole window)")
    }

    /// Scores the whole window into `out` (empty on entry, one push per item, in item order).
    /// Write it instead of [`Scorer::score_item`] for formulas that look across items, such as
    /// a normalisation; an `Err` rejects the batch (the host falls back for it).
    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        // Into a slice rather than `push` per item: no capacity check per score.
        let start = out.len();
        out.resize(start + batch.len(), 0.0);
        for (slot, item) in out[start..].iter_mut().zip(batch.items()) {
            *slot = self.score_item(&item);
        }
        Ok(())
    }
}

/// Params of a scorer that takes none: accepts absent, `null` or `{}` and rejects anything else,
/// so a misspelt parameter is an error rather than silently ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Parses `plugin.params` JSON into typed params; absent (empty) or `null` means the default.
pub fn parse_params<P: DeserializeOwned + Default>(params_json: &str) -> Result<P, String> {
    let trimmed = params_json.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(P::default());
    }
    serde_json::from_str(trimmed).map_err(|e| format!("invalid plugin params {trimmed}: {e}"))
}

/// Builds a scorer from `plugin.params` JSON, as the host's `configure` call does.
pub fn build_scorer<S: Scorer>(params_json: &str) -> Result<S, String> {
    S::new(parse_params(params_json)?)
}

/// Runs a scorer on a raw batch, as the host's `score` call does: checks the batch layout, then
/// collects one score per item.
pub fn run_scorer<S: Scorer>(scorer: &S, raw: &RawBatch) -> Result<Vec<f64>, String> {
    let cache = std::sync::OnceLock::new();
    let batch = Batch::new(raw)?.with_decay_cache(&cache);
    let mut out = Vec::with_capacity(batch.len());
    scorer.score(&batch, &mut out)?;
    Ok(out)
}

/// Exports a [`Scorer`] as the plugin's component interface (`configure` and `score` of WIT
/// world `rtscore:scoring/scorer`). Use it once, in the plugin crate's `lib.rs`.
#[macro_export]
#[rustfmt::skip] // rustfmt cannot settle on the `with_types_in` invocation's indentation
macro_rules! export_scorer {
    ($scorer:ty) => {
        const _: () = {
            struct __RtscoreExport;

            impl $crate::bindings::Guest for __RtscoreExport {
                fn configure(params_json: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::configure::<$scorer>(&params_json)
                }

                fn score(batch: $crate::RawBatch) -> ::std::result::Result<::std::vec::Vec<f64>, ::std::string::String> {
                    $crate::__private::score::<$scorer>(&batch)
                }
            }

            $crate::bindings::__export_scorer_world!(__RtscoreExport with_types_in $crate::bindings);
        };
    };
}

/// Support for [`export_scorer!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    use std::any::Any;
    use std::cell::RefCell;

    pub use wit_bindgen;

    use crate::{RawBatch, Scorer};

    // A component instance is single-threaded and owns exactly one configured scorer; the host
    // never shares an instance between scenarios.
    thread_local! {
        static SCORER: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    pub fn configure<S: Scorer>(params_json: &str) -> Result<(), String> {
        let scorer: S = crate::build_scorer(params_json)?;
        SCORER.with(|slot| *slot.borrow_mut() = Some(Box::new(scorer)));
        Ok(())
    }

    pub fn configure_metrics<M: crate::metrics::Metrics>(params_json: &str) -> Result<(), String> {
        let plugin: M = crate::metrics::build_metrics(params_json)?;
        SCORER.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    pub fn compute_metrics<M: crate::metrics::Metrics>(
        window: &crate::metrics::RawMetricsWindow,
    ) -> Result<Vec<crate::metrics::Metric>, String> {
        SCORER.with(|slot| {
            let slot = slot.borrow();
            let plugin =
                slot.as_ref().and_then(|s| s.downcast_ref::<M>()).ok_or_else(|| "compute-metrics called before configure".to_string())?;
            crate::metrics::run_metrics(plugin, window)
        })
    }

    pub fn configure_profiler<P: crate::profile::Profiler>(params_json: &str) -> Result<(), String> {
        let plugin: P = crate::profile::build_profiler(params_json)?;
        SCORER.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    pub fn update_profiles<P: crate::profile::Profiler>(
        batch: &crate::profile::RawProfileBatch,
    ) -> Result<Vec<Vec<crate::profile::Interest>>, String> {
        SCORER.with(|slot| {
            let slot = slot.borrow();
            let plugin =
                slot.as_ref().and_then(|s| s.downcast_ref::<P>()).ok_or_else(|| "update-profiles called before configure".to_string())?;
            crate::profile::run_profiler(plugin, batch)
        })
    }

    pub fn score<S: Scorer>(batch: &RawBatch) -> Result<Vec<f64>, String> {
        SCORER.with(|slot| {
            let slot = slot.borrow();
            let scorer = slot.as_ref().and_then(|s| s.downcast_ref::<S>()).ok_or_else(|| "score called before configure".to_string())?;
            crate::run_scorer(scorer, batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct P {
        gravity: f64,
        name: String,
    }

    #[test]
    fn params_default_when_absent_or_null() {
        assert_eq!(parse_params::<P>("").unwrap(), P::default());
        assert_eq!(parse_params::<P>(" null ").unwrap(), P::default());
        assert_eq!(parse_params::<P>("{}").unwrap(), P::default());
        let p: P = parse_params(r#"{"gravity": 1.5}"#).unwrap();
        assert_eq!(p.gravity, 1.5);
    }

    struct Whole;

    impl Scorer for Whole {
        type Params = NoParams;
        fn new(_: NoParams) -> Result<Self, String> {
            Ok(Self)
        }
        // Only the whole-window function: `score_item` is not needed.
        fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
            let n = batch.len() as f64;
            out.extend(batch.items().map(|i| i.weighted_count() / n));
            Ok(())
        }
    }

    struct Neither;

    impl Scorer for Neither {
        type Params = NoParams;
        fn new(_: NoParams) -> Result<Self, String> {
            Ok(Self)
        }
    }

    #[test]
    fn a_scorer_writes_score_or_score_item() {
        let batch = testing::BatchBuilder::new().weight("view", 1.0).event("a", "view", 0, 3).event("b", "view", 0, 1).build();
        assert_eq!(batch.run::<Whole>("null").unwrap(), vec![1.5, 0.5]);
        let panicked = std::panic::catch_unwind(|| batch.run::<Neither>("null")).unwrap_err();
        let msg = panicked.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(msg.contains("implement `score_item`"), "{msg}");
    }

    #[test]
    fn params_errors_name_the_input() {
        let err = parse_params::<P>(r#"{"gravty": 1.5}"#).unwrap_err();
        assert!(err.contains("gravty"), "{err}");
        let err = parse_params::<NoParams>(r#"{"x": 1}"#).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
