//! The one wasmtime `Engine` of the process: compiles plugin components (cached by sha256 in
//! memory and, with a cache directory, on disk across restarts: `disk_cache`) and hands out
//! sandboxed instances. Compiled code is shared; stores never are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::{PluginWorld, WitVersion, v0_1, v0_2, v0_2_metrics, v0_2_profile};
use super::disk_cache::DiskCache;
use super::error::PluginError;
use super::instance::PluginInstance;
use super::sandbox::{Grants, HostState};
use crate::config::plugin_limits::{BudgetMode, SandboxLimits};

/// Lower-case hex sha256 of module bytes, the form plugin references pin.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A compiled plugin component, ready to instantiate cheaply any number of times.
pub struct CompiledPlugin {
    sha256: String,
    size: usize,
    /// Read from the disk cache rather than compiled by this process.
    from_disk: bool,
    pub(crate) pre: WorldPre,
    /// The `score` export of a scorer (the one call made without generated bindings).
    pub(crate) score_export: Option<ComponentExportIndex>,
}

/// The pre-instantiated component with the bindings of the WIT version and world it targets.
pub(crate) enum WorldPre {
    V0_1(v0_1::ScorerPre<HostState>),
    V0_2(v0_2::ScorerPre<HostState>),
    Metrics(v0_2_metrics::MetricsPre<HostState>),
    Profile(v0_2_profile::ProfilePre<HostState>),
}

impl WorldPre {
    pub(crate) fn version(&self) -> WitVersion {
        match self {
            WorldPre::V0_1(_) => WitVersion::V0_1,
            WorldPre::V0_2(_) | WorldPre::Metrics(_) | WorldPre::Profile(_) => WitVersion::V0_2,
        }
    }

    pub(crate) fn world(&self) -> PluginWorld {
        match self {
            WorldPre::V0_1(_) | WorldPre::V0_2(_) => PluginWorld::Scorer,
            WorldPre::Metrics(_) => PluginWorld::Metrics,
            WorldPre::Profile(_) => PluginWorld::Profile,
        }
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            WorldPre::V0_1(p) => p.instance_pre(),
            WorldPre::V0_2(p) => p.instance_pre(),
            WorldPre::Metrics(p) => p.instance_pre(),
            WorldPre::Profile(p) => p.instance_pre(),
        }
    }
}

impl CompiledPlugin {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The `rtscore:scoring` version the component targets (see [`WitVersion::detect`]).
    pub fn wit_version(&self) -> WitVersion {
        self.pre.version()
    }

    /// The world the component implements (see [`PluginWorld::detect`]).
    pub fn world(&self) -> PluginWorld {
        self.pre.world()
    }

    /// Size of the module it was compiled from, in bytes.
    pub fn module_size(&self) -> usize {
        self.size
    }

    /// Whether the compiled code came from the disk cache (compiled by an earlier process)
    /// rather than from compiling the module.
    pub fn from_disk_cache(&self) -> bool {
        self.from_disk
    }
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .field("wit_version", &self.wit_version())
            .field("world", &self.world())
            .finish()
    }
}

/// Shared plugin engine: clone it freely (it is an `Arc`).
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<HostState>,
    limits: SandboxLimits,
    grants: Grants,
    cache: Mutex<HashMap<String, Arc<CompiledPlugin>>>,
    /// Compiled components kept across restarts (`--plugin-cache-dir`).
    disk: Option<DiskCache>,
}

/// Set to `1`, compiled plugin code is listed in `/tmp/perf-PID.map` for `perf`.
pub const PERFMAP_ENV: &str = "RTSCORE_PLUGIN_PERFMAP";

impl PluginEngine {
    /// An engine whose instances get `limits` and the capabilities in `grants` (none by
    /// default). With [`BudgetMode::Epoch`] this starts the epoch ticker thread, which stops
    /// once the engine and every store made from it are dropped.
    pub fn new(limits: SandboxLimits, grants: Grants) -> Result<Self, PluginError> {
        Self::with_disk_cache(limits, grants, None)
    }

    /// [`Self::new`] keeping compiled components in `cache_dir` too (see `disk_cache` for what
    /// the directory must be): a module compiled once, by this process or an earlier one, is
    /// read back instead of compiled. A directory that cannot be used is logged and the engine
    /// runs without it.
    pub fn with_disk_cache(limits: SandboxLimits, grants: Grants, cache_dir: Option<&std::path::Path>) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Plugins are plain synchronous components; component-model async is not part of the
        // contract, and leaving it off keeps calls on wasmtime's simple path.
        config.concurrency_support(false);
        config.cranelift_opt_level(OptLevel::Speed);
        config.max_wasm_stack(1 << 20);
        // For plugin authors and for us: `perf report` then names the guest's functions instead
        // of bare JIT addresses (docs/plugins.md, "Profiling a plugin").
        if std::env::var_os(PERFMAP_ENV).is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        match limits.budget_mode {
            BudgetMode::Epoch { .. } => {
                config.epoch_interruption(true);
            }
            BudgetMode::Fuel { .. } => {
                config.consume_fuel(true);
            }
        }
        let engine = Engine::new(&config).map_err(|e| PluginError::Instantiate(format!("wasmtime engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        // WASI is linked for the Rust standard library's sake; the context in each store
        // (`HostState::new`) grants nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| PluginError::Instantiate(format!("linking WASI: {e}")))?;
        if let BudgetMode::Epoch { tick } = limits.budget_mode {
            spawn_ticker(&engine, tick);
        }
        let disk = cache_dir.and_then(|dir| match DiskCache::open(dir, &engine) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "the compiled-plugin cache directory is not used: modules are compiled at every start");
                None
            }
        });
        Ok(Self { inner: Arc::new(EngineInner { engine, linker, limits, grants, cache: Mutex::new(HashMap::new()), disk }) })
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.inner.limits
    }

    pub fn grants(&self) -> Grants {
        self.inner.grants
    }

    /// The directory compiled components are kept in across restarts, when there is one.
    pub fn disk_cache_dir(&self) -> Option<&std::path::Path> {
        self.inner.disk.as_ref().map(DiskCache::dir)
    }

    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// The compiled component for `sha256`, if cached.
    pub fn compiled(&self, sha256: &str) -> Option<Arc<CompiledPlugin>> {
        self.cache().get(sha256).cloned()
    }

    /// Compiles module bytes into a component checked against the `rtscore:scoring` world it
    /// implements ([`PluginWorld::detect`]) in the version it targets (0.1.0 or 0.2.0, see
    /// [`WitVersion::detect`]), or returns the cached one with the same sha256 (in memory, else
    /// from the disk cache). CPU-heavy (tens to hundreds of ms for a Rust module, seconds for an
    /// interpreter's): call it from a blocking thread (`tokio::task::spawn_blocking`), not the
    /// event path.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledPlugin>, PluginError> {
        let sha256 = sha256_hex(bytes);
        if let Some(hit) = self.compiled(&sha256) {
            return Ok(hit);
        }
        let started = std::time::Instant::now();
        let disk = self.inner.disk.as_ref();
        // One compile of a module at a time on the machine; whoever waited finds it done.
        let _entry = disk.and_then(|d| d.lock(&sha256));
        if let Some(hit) = self.compiled(&sha256) {
            return Ok(hit);
        }
        let (component, source) = match disk.and_then(|d| d.load(&self.inner.engine, &sha256)) {
            Some(c) => (c, "disk cache"),
            None => {
                let c = Component::new(&self.inner.engine, bytes).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
                (c, "compiled")
            }
        };
        let version = WitVersion::detect(&component, &self.inner.engine)?;
        let world = PluginWorld::detect(&component, &self.inner.engine)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Instantiate(format!("the module imports something the sandbox does not provide: {e:#}")))?;
        let not_world = |e: wasmtime::Error| PluginError::Compile(format!("not an rtscore:scoring/{world}@{version} component: {e:#}"));
        let pre = match (world, version) {
            (PluginWorld::Scorer, WitVersion::V0_1) => WorldPre::V0_1(v0_1::ScorerPre::new(instance_pre).map_err(not_world)?),
            (PluginWorld::Scorer, WitVersion::V0_2) => WorldPre::V0_2(v0_2::ScorerPre::new(instance_pre).map_err(not_world)?),
            (PluginWorld::Metrics, WitVersion::V0_2) => WorldPre::Metrics(v0_2_metrics::MetricsPre::new(instance_pre).map_err(not_world)?),
            (PluginWorld::Profile, WitVersion::V0_2) => WorldPre::Profile(v0_2_profile::ProfilePre::new(instance_pre).map_err(not_world)?),
            (PluginWorld::Metrics | PluginWorld::Profile, WitVersion::V0_1) => {
                return Err(PluginError::Compile(format!("world {world} is part of rtscore:scoring@0.2.0; the component targets 0.1.0")));
            }
        };
        let score_export = match world {
            PluginWorld::Scorer => Some(
                component
                    .get_export_index(None, "score")
                    .ok_or_else(|| PluginError::Compile("the component exports no `score` function".into()))?,
            ),
            PluginWorld::Metrics | PluginWorld::Profile => None,
        };
        // Only a component that passed every check above is kept for the next start.
        if let (Some(d), "compiled") = (disk, source) {
            d.store(&sha256, &component);
        }
        let compiled =
            Arc::new(CompiledPlugin { sha256: sha256.clone(), size: bytes.len(), from_disk: source == "disk cache", pre, score_export });
        tracing::info!(%sha256, size = bytes.len(), wit = %version, %world, source, ms = started.elapsed().as_millis() as u64,
            "compiled plugin component");
        // Two threads may race to compile the same module; either result is the same code.
        Ok(self.cache().entry(sha256).or_insert(compiled).clone())
    }

    /// A new sandboxed instance of `compiled`, configured with `params` (the scenario's
    /// `plugin.params`). Runs guest code under the call budget; call it off the event path.
    pub fn instantiate(
        &self,
        compiled: Arc<CompiledPlugin>,
        label: impl Into<String>,
        params: &serde_json::Value,
    ) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(self.clone(), compiled, label.into(), params, self.inner.limits.clone(), None)
    }

    /// Like [`Self::instantiate`], with a tenant's CPU budget and memory cap instead of the
    /// engine's (the budget mode stays the engine's: it is part of the compiled code).
    pub fn instantiate_with_limits(
        &self,
        compiled: Arc<CompiledPlugin>,
        label: impl Into<String>,
        params: &serde_json::Value,
        limits: SandboxLimits,
    ) -> Result<PluginInstance, PluginError> {
        self.instantiate_for_tenant(compiled, label, params, limits, None)
    }

    /// Like [`Self::instantiate_with_limits`], booking the instance's memory in its tenant's
    /// pool (`plugin::memory`).
    pub fn instantiate_for_tenant(
        &self,
        compiled: Arc<CompiledPlugin>,
        label: impl Into<String>,
        params: &serde_json::Value,
        limits: SandboxLimits,
        memory: Option<Arc<super::memory::TenantMemory>>,
    ) -> Result<PluginInstance, PluginError> {
        let limits = SandboxLimits { budget_mode: self.inner.limits.budget_mode, ..limits };
        PluginInstance::new(self.clone(), compiled, label.into(), params, limits, memory)
    }

    /// Drops compiled components no instance uses any more (after hot swaps); returns how many.
    pub fn purge_unused(&self) -> usize {
        let mut cache = self.cache();
        let before = cache.len();
        cache.retain(|_, c| Arc::strong_count(c) > 1);
        before - cache.len()
    }

    /// Number of cached compiled components.
    pub fn cached(&self) -> usize {
        self.cache().len()
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Arc<CompiledPlugin>>> {
        // The map stays consistent even if a holder panicked: entries are inserted whole.
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Advances the engine's epoch every `tick` until the engine is gone.
fn spawn_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("rtscore-plugin-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    });
    if let Err(e) = spawned {
        // Without a ticker, epochs never advance and the deadline never fires; the executor's
        // wall-clock deadline still ends runaway calls (see `instance.rs`).
        tracing::error!(error = %e, "could not start the plugin epoch ticker thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bytes_that_are_not_a_component() {
        let engine = PluginEngine::new(SandboxLimits::default(), Grants::default()).unwrap();
        let err = engine.compile(b"definitely not wasm").unwrap_err();
        assert!(matches!(err, PluginError::Compile(_)), "{err}");
        // A core module is not a component either.
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(engine.compile(core), Err(PluginError::Compile(_))));
        assert_eq!(engine.cached(), 0);
    }

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
