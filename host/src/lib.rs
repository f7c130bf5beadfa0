//! rtscore: a WebAssembly-pluggable, config-driven real-time scoring runtime.
//!
//! Data flows `sources -> event (validation) -> window (state) -> scoring -> sinks`; the config
//! store and the plugin registry are side inputs. See `docs/architecture.md`.

pub mod admin;
#[cfg(feature = "http")]
pub mod api;
pub mod backtest;
pub mod config;
#[cfg(feature = "http")]
pub mod console;
pub mod event;
pub mod health;
#[cfg(feature = "http")]
pub mod http;
pub mod metrics_label;
pub mod output;
pub mod pipeline;
pub mod plugin;
pub mod prefetch;
pub mod repartition;
pub mod runtime;
pub mod scoring;
pub mod settings;
pub mod sinks;
pub mod snapshot;
pub mod sources;
pub mod text;
pub mod window;
