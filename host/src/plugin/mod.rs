//! Plugin engine: runs a scenario's scoring formula as a sandboxed WebAssembly component.
//!
//! - [`registry`]: where modules come from (a watched directory, MongoDB), by name, version
//!   and sha256;
//! - [`engine`]: the shared wasmtime engine, compiled components cached by sha256 (and kept
//!   on disk across restarts by [`disk_cache`]);
//! - [`sandbox`]: what an instance may use (the CPU budget and memory cap of
//!   `config::plugin_limits` enforced, a WASI context granting nothing);
//! - [`instance`]: one scenario's instance and its `configure` / `score` calls;
//! - [`scorer`]: the per-scenario state machine on the event path that never fails (fallback
//!   and quarantine);
//! - [`job_plugin`]: the same for the plugin of a metrics or profile job (worlds `metrics` and
//!   `profile`, see [`metrics`] and [`profile`]), whose fallback is the job's built-in path;
//! - [`loader`]: prepares instances off the event path (resolve, compile, instantiate).
//!
//! See `docs/plugins.md`.

mod bindings;
pub mod cpu;
pub mod disk_cache;
pub mod engine;
pub mod error;
mod executor;
pub mod instance;
pub mod job_plugin;
pub mod loader;
pub mod memory;
pub mod metrics;
pub mod profile;
pub mod registry;
pub mod sandbox;
pub mod scorer;

pub use bindings::{PluginWorld, WitVersion};
pub use engine::{CompiledPlugin, PluginEngine, sha256_hex};
pub use error::PluginError;
pub use instance::PluginInstance;
pub use job_plugin::JobPlugin;
pub use loader::PluginLoader;
pub use metrics::{MetricsInput, PluginMetric};
pub use profile::{ProfileEventInput, ProfileInput, ProfileInterests, UserInput};
pub use registry::{ModuleId, ModuleInfo, ModuleSource, PluginRegistry, RegistryChange, ResolvedModule, publish_to_dir};
#[cfg(feature = "mongodb")]
pub use registry::{publish_to_mongo, publish_to_mongo_as};
pub use sandbox::Grants;
pub use scorer::{DEFAULT_QUARANTINE_AFTER, PluginState, ScenarioScorer, ScoreOutcome, ScorerUsed};
