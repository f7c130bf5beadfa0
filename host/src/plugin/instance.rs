//! One sandboxed plugin instance: its own store (never shared across scenarios), the
//! `configure` and `score` calls, and the checks on what comes back.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Func, TypedFunc};
use wasmtime::{Store, Trap};

use super::bindings::{
    PluginWorld, ScoreParamsV0_1, ScoreParamsV0_2, ScoreResults, WindowBatchV0_1, WindowBatchV0_2, WitVersion, v0_1, v0_2, v0_2_metrics,
    v0_2_profile,
};
use super::cpu::TenantCpu;
use super::engine::{CompiledPlugin, PluginEngine, WorldPre};
use super::error::PluginError;
use super::executor::run_until;
use super::memory::TenantMemory;
use super::metrics::{MetricsInput, PluginMetric, check_metrics};
use super::profile::{ProfileInput, ProfileInterests, check_profiles};
use super::sandbox::HostState;
use crate::config::plugin_limits::{BudgetMode, SandboxLimits};
use crate::scoring::WindowBatch;

/// A configured plugin instance, owned by one scenario.
///
/// After a trap wasmtime leaves the instance unusable; a new one is instantiated from the
/// cached compiled component, with the params re-applied, on a thread of its own while the
/// pipeline goes on to the next window. A call that finds it still not ready after one call's
/// budget fails with [`PluginError::Restarting`].
pub struct PluginInstance {
    engine: PluginEngine,
    /// The engine's limits, or a tenant's quotas (`config::tenant`).
    limits: SandboxLimits,
    compiled: Arc<CompiledPlugin>,
    label: String,
    params_json: String,
    live: Option<Live>,
    /// The instance being re-created after a failure.
    restarting: Option<std::sync::mpsc::Receiver<Result<Live, PluginError>>>,
    /// The tenant's CPU account, charged with every call's time.
    cpu: Option<Arc<TenantCpu>>,
    /// The tenant's plugin memory, booked by every store of this instance.
    memory: Option<Arc<TenantMemory>>,
    /// Time and budget of the last `score` call.
    last_call: (Duration, Duration),
}

struct Live {
    store: Store<HostState>,
    call: Call,
}

/// The export an instance is called through, by world.
enum Call {
    /// The `score` export, type-checked once against the signature of the component's WIT
    /// version ([`ScoreParamsV0_1`] or [`ScoreParamsV0_2`], and [`ScoreResults`]).
    Score(Func),
    Metrics(v0_2_metrics::Metrics),
    Profile(v0_2_profile::Profile),
}

/// Which call failed, for error mapping.
#[derive(Clone, Copy)]
enum Stage {
    Instantiate,
    Configure,
    Score,
}

impl PluginInstance {
    pub(crate) fn new(
        engine: PluginEngine,
        compiled: Arc<CompiledPlugin>,
        label: String,
        params: &serde_json::Value,
        limits: SandboxLimits,
        memory: Option<Arc<TenantMemory>>,
    ) -> Result<Self, PluginError> {
        let mut instance = Self {
            memory,
            engine,
            limits,
            compiled,
            label,
            params_json: String::new(),
            live: None,
            restarting: None,
            cpu: None,
            last_call: (Duration::ZERO, Duration::ZERO),
        };
        instance.configure(params)?;
        Ok(instance)
    }

    /// Charges this instance's calls to `cpu` (its tenant's account).
    pub fn with_cpu(mut self, cpu: Arc<TenantCpu>) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// The tenant's CPU account, if the instance has one.
    pub fn cpu(&self) -> Option<&Arc<TenantCpu>> {
        self.cpu.as_ref()
    }

    /// Time and budget of the last `score` call.
    pub fn last_call(&self) -> (Duration, Duration) {
        self.last_call
    }

    /// `name@version` of the plugin reference this instance serves.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// sha256 of the module it runs.
    pub fn sha256(&self) -> &str {
        self.compiled.sha256()
    }

    /// The `rtscore:scoring` version of the module it runs.
    pub fn wit_version(&self) -> WitVersion {
        self.compiled.wit_version()
    }

    /// The world of the module it runs.
    pub fn world(&self) -> PluginWorld {
        self.compiled.world()
    }

    fn wrong_world(&self, expected: PluginWorld) -> PluginError {
        let found = self.world();
        PluginError::WrongWorld {
            reference: self.label.clone(),
            expected: expected.name(),
            found: found.name(),
            section: expected.section(),
            found_section: found.section(),
        }
    }

    /// (Re)configures the instance with new params. On error the instance keeps no params and
    /// must not be used; prepare a new one.
    pub fn configure(&mut self, params: &serde_json::Value) -> Result<(), PluginError> {
        self.params_json = params.to_string();
        // Configure runs once per instance: a fresh one gives the guest a clean slate.
        self.restarting = None;
        let started = Instant::now();
        let live = instantiate(&self.engine, &self.compiled, &self.limits, self.memory.clone(), &self.params_json, &self.label);
        if let Some(cpu) = &self.cpu {
            cpu.charge(started.elapsed());
        }
        self.live = Some(live?);
        Ok(())
    }

    /// Scores every item of `batch` into `out` (replaced), one finite score per item. A 0.2.0
    /// module ([`Self::wit_version`]) also reads the window context, `item_ids` above all (one
    /// per item: the guest SDK refuses a batch without them); the pipeline fills it for such
    /// modules, callers scoring batches of their own must too.
    pub fn score(&mut self, batch: &WindowBatch, out: &mut Vec<f64>) -> Result<(), PluginError> {
        out.clear();
        let items = batch.item_count();
        let budget = self.limits.budget_for(items);
        let mode = self.limits.budget_mode;
        let version = self.compiled.wit_version();
        if self.world() != PluginWorld::Scorer {
            return Err(self.wrong_world(PluginWorld::Scorer));
        }
        let live = match self.live.as_mut() {
            Some(live) => live,
            None => self.resume()?,
        };
        let Call::Score(score) = live.call else { return Err(PluginError::Instantiate("a scorer instance without `score`".into())) };
        let started = Instant::now();
        let result =
            match version {
                // SAFETY: `score` was type-checked against `ScoreParamsV0_1<'static>` /
                // `ScoreResults` when the instance was created; the view type differs only in its
                // borrow's lifetime. With the 0.2.0 arm below, the one `unsafe` site of the
                // workspace (Cargo.toml denies it elsewhere).
                WitVersion::V0_1 => {
                    #[allow(unsafe_code)]
                    let typed: TypedFunc<ScoreParamsV0_1<'_>, ScoreResults> = unsafe { TypedFunc::new_unchecked(score) };
                    call(&mut live.store, budget, mode, move |store| async move {
                        typed.call_async(store, (WindowBatchV0_1::from(batch),)).await
                    })
                }
                // SAFETY: as above, against `ScoreParamsV0_2<'static>`.
                WitVersion::V0_2 => {
                    #[allow(unsafe_code)]
                    let typed: TypedFunc<ScoreParamsV0_2<'_>, ScoreResults> = unsafe { TypedFunc::new_unchecked(score) };
                    call(&mut live.store, budget, mode, move |store| async move {
                        typed.call_async(store, (WindowBatchV0_2::from(batch),)).await
                    })
                }
            };
        let used = started.elapsed();
        self.last_call = (used, budget);
        if let Some(cpu) = &self.cpu {
            cpu.charge(used);
        }
        let scores = match result {
            Ok((Ok(scores),)) => scores,
            Ok((Err(message),)) => return Err(PluginError::Guest(message)),
            Err(e) => return Err(self.poison(e, Stage::Score, budget)),
        };
        if scores.len() != items {
            return Err(PluginError::WrongLength { expected: items, got: scores.len() });
        }
        if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            // The ids are in the batch for 0.2.0 plugins; the pipeline names the item otherwise.
            let item = batch.item_id(index).map(str::to_string);
            return Err(PluginError::NonFinite { index, item, value });
        }
        *out = scores;
        Ok(())
    }

    /// The metrics of one closed metrics window (world `metrics`), checked against the window
    /// ([`check_metrics`]). Same budget, CPU account and failure handling as [`Self::score`],
    /// the window's tracked items counting as its items.
    pub fn compute_metrics(&mut self, input: &MetricsInput) -> Result<Vec<PluginMetric>, PluginError> {
        if self.world() != PluginWorld::Metrics {
            return Err(self.wrong_world(PluginWorld::Metrics));
        }
        let budget = self.limits.budget_for(input.item_ids.len());
        let mode = self.limits.budget_mode;
        let live = match self.live.as_mut() {
            Some(live) => live,
            None => self.resume()?,
        };
        let Live { store, call: Call::Metrics(bindings) } = live else {
            return Err(PluginError::Instantiate("a metrics instance without `compute-metrics`".into()));
        };
        let window = input.to_wit();
        let started = Instant::now();
        let result = call(store, budget, mode, move |store| async move { bindings.call_compute_metrics(store, &window).await });
        let used = started.elapsed();
        self.last_call = (used, budget);
        if let Some(cpu) = &self.cpu {
            cpu.charge(used);
        }
        match result {
            Ok(Ok(metrics)) => check_metrics(metrics, input),
            Ok(Err(message)) => Err(PluginError::Guest(message)),
            Err(e) => Err(self.poison(e, Stage::Score, budget)),
        }
    }

    /// The new interests of a batch of users due to be written (world `profile`), checked
    /// against the batch ([`check_profiles`]). Same budget, CPU account and failure handling as
    /// [`Self::score`], the batch's events counting as its items.
    pub fn update_profiles(&mut self, input: &ProfileInput) -> Result<Vec<ProfileInterests>, PluginError> {
        if self.world() != PluginWorld::Profile {
            return Err(self.wrong_world(PluginWorld::Profile));
        }
        let budget = self.limits.budget_for(input.events());
        let mode = self.limits.budget_mode;
        let live = match self.live.as_mut() {
            Some(live) => live,
            None => self.resume()?,
        };
        let Live { store, call: Call::Profile(bindings) } = live else {
            return Err(PluginError::Instantiate("a profile instance without `update-profiles`".into()));
        };
        let batch = input;
        let started = Instant::now();
        let result = call(store, budget, mode, move |store| async move { bindings.call_update_profiles(store, batch).await });
        let used = started.elapsed();
        self.last_call = (used, budget);
        if let Some(cpu) = &self.cpu {
            cpu.charge(used);
        }
        match result {
            Ok(Ok(interests)) => check_profiles(interests, input),
            Ok(Err(message)) => Err(PluginError::Guest(message)),
            Err(e) => Err(self.poison(e, Stage::Score, budget)),
        }
    }

    /// The re-created instance. It was started when the old one failed, so it has had the time
    /// between two windows to get ready; if it is not, this waits for it up to one call's
    /// budget (as long as a call may take anyway), so replays score the same windows with it
    /// however fast they run. Past that, an error for the scorer to fall back on.
    fn resume(&mut self) -> Result<&mut Live, PluginError> {
        use std::sync::mpsc::RecvTimeoutError;
        let wait = self.limits.call_budget + Duration::from_millis(50);
        let result = match &self.restarting {
            None => {
                self.restart();
                return Err(PluginError::Restarting);
            }
            Some(rx) => match rx.recv_timeout(wait) {
                Ok(result) => result,
                Err(RecvTimeoutError::Timeout) => return Err(PluginError::Restarting),
                Err(RecvTimeoutError::Disconnected) => Err(PluginError::Instantiate("the instantiating thread ended".into())),
            },
        };
        self.restarting = None;
        Ok(self.live.insert(result?))
    }

    /// Instantiates and configures a new instance on a thread of its own.
    fn restart(&mut self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (engine, compiled, limits) = (self.engine.clone(), self.compiled.clone(), self.limits.clone());
        let (params, label, cpu, memory) = (self.params_json.clone(), self.label.clone(), self.cpu.clone(), self.memory.clone());
        let spawned = std::thread::Builder::new().name("rtscore-plugin-restart".into()).spawn(move || {
            let started = Instant::now();
            let live = instantiate(&engine, &compiled, &limits, memory, &params, &label);
            if let Some(cpu) = cpu {
                cpu.charge(started.elapsed());
            }
            let _ = tx.send(live);
        });
        match spawned {
            Ok(_) => self.restarting = Some(rx),
            Err(e) => {
                tracing::warn!(plugin = %self.label, error = %e, "cannot start a thread to re-create the plugin instance; retrying on the next call")
            }
        }
    }
}

/// The generated bindings of an instance, for its `configure` call.
enum Configure {
    V0_1(v0_1::Scorer),
    V0_2(v0_2::Scorer),
    Metrics(v0_2_metrics::Metrics),
    Profile(v0_2_profile::Profile),
}

/// A new instance of `compiled`, configured with `params_json`.
fn instantiate(
    engine: &PluginEngine,
    compiled: &CompiledPlugin,
    limits: &SandboxLimits,
    memory: Option<Arc<TenantMemory>>,
    params_json: &str,
    label: &str,
) -> Result<Live, PluginError> {
    let budget = limits.call_budget;
    let mut store = Store::new(engine.wasmtime(), HostState::new(limits, engine.grants()));
    if let Some(pool) = memory {
        store.data_mut().limiter.set_pool(pool);
    }
    store.limiter(|s| &mut s.limiter);
    if matches!(limits.budget_mode, BudgetMode::Epoch { .. }) {
        store.epoch_deadline_trap();
    }
    let version = compiled.wit_version();
    let pre = compiled.pre.instance_pre().clone();
    let bindings = &compiled.pre;
    let (configure, instance) = call(&mut store, budget, limits.budget_mode, |store| async move {
        let instance = pre.instantiate_async(&mut *store).await?;
        // The generated bindings type-check both exports against the component's version.
        let configure = match bindings {
            WorldPre::V0_1(_) => Configure::V0_1(v0_1::Scorer::new(&mut *store, &instance)?),
            WorldPre::V0_2(_) => Configure::V0_2(v0_2::Scorer::new(&mut *store, &instance)?),
            WorldPre::Metrics(_) => Configure::Metrics(v0_2_metrics::Metrics::new(&mut *store, &instance)?),
            WorldPre::Profile(_) => Configure::Profile(v0_2_profile::Profile::new(&mut *store, &instance)?),
        };
        Ok((configure, instance))
    })
    .map_err(|e| classify(e, &store, Stage::Instantiate, budget, limits.memory_bytes))?;
    let score = match compiled.score_export {
        Some(index) => {
            let score = instance
                .get_func(&mut store, index)
                .ok_or_else(|| PluginError::Instantiate("the instance exports no `score` function".into()))?;
            let typed = match version {
                WitVersion::V0_1 => score.typed::<ScoreParamsV0_1<'static>, ScoreResults>(&store).map(drop),
                WitVersion::V0_2 => score.typed::<ScoreParamsV0_2<'static>, ScoreResults>(&store).map(drop),
            };
            typed.map_err(|e| PluginError::Compile(format!("`score` does not match rtscore:scoring@{version}: {e:#}")))?;
            Some(score)
        }
        None => None,
    };
    let params = params_json.to_string();
    let configured = call(&mut store, budget, limits.budget_mode, |store| async {
        match &configure {
            Configure::V0_1(b) => b.call_configure(store, &params).await,
            Configure::V0_2(b) => b.call_configure(store, &params).await,
            Configure::Metrics(b) => b.call_configure(store, &params).await,
            Configure::Profile(b) => b.call_configure(store, &params).await,
        }
    });
    match configured {
        Ok(Ok(())) => {}
        Ok(Err(message)) => return Err(PluginError::Configure(message)),
        Err(e) => return Err(classify(e, &store, Stage::Configure, budget, limits.memory_bytes)),
    }
    tracing::debug!(plugin = %label, sha256 = %compiled.sha256(), wit = %version, "plugin instance ready");
    let call = match (configure, score) {
        (Configure::Metrics(b), _) => Call::Metrics(b),
        (Configure::Profile(b), _) => Call::Profile(b),
        (_, Some(score)) => Call::Score(score),
        (_, None) => return Err(PluginError::Instantiate("a scorer component without `score`".into())),
    };
    Ok(Live { store, call })
}

impl PluginInstance {
    /// Drops the live instance after a failed call and maps the failure.
    fn poison(&mut self, e: wasmtime::Error, stage: Stage, budget: Duration) -> PluginError {
        let cap = self.limits.memory_bytes;
        let err = match &self.live {
            Some(live) => classify(e, &live.store, stage, budget, cap),
            None => PluginError::Trap(format!("{e:#}")),
        };
        self.live = None;
        // The next instance is made off the event path, starting now.
        self.restart();
        err
    }
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("label", &self.label)
            .field("sha256", &self.compiled.sha256())
            .field("live", &self.live.is_some())
            .finish()
    }
}

/// Why a call ended early, recorded on the error so `classify` can name it.
#[derive(Debug)]
struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("call deadline passed while the guest was waiting")
    }
}

impl std::error::Error for DeadlinePassed {}

/// Runs one guest call under the CPU budget: arms the epoch deadline or fuel, clears the
/// per-call trackers, and drives the call on this thread. A host panic while serving the
/// guest becomes an error instead of unwinding into the caller.
fn call<'s, T, F, Fut>(store: &'s mut Store<HostState>, budget: Duration, mode: BudgetMode, f: F) -> wasmtime::Result<T>
where
    F: FnOnce(&'s mut Store<HostState>) -> Fut,
    Fut: std::future::Future<Output = wasmtime::Result<T>>,
{
    let grace = match mode {
        BudgetMode::Epoch { tick } => {
            store.set_epoch_deadline(ticks(budget, tick));
            tick * 2
        }
        BudgetMode::Fuel { units_per_ms } => {
            let fuel = (budget.as_millis() as u64).max(1).saturating_mul(units_per_ms);
            store.set_fuel(fuel)?;
            Duration::ZERO
        }
    };
    store.data_mut().limiter.reset();
    store.data().stderr.clear();
    // The executor's deadline backs up the epoch: it ends calls blocked in a host wait, where
    // no wasm runs to notice the epoch.
    let deadline = Instant::now() + budget + grace + Duration::from_millis(10);
    let fut = f(store);
    match catch_unwind(AssertUnwindSafe(move || run_until(fut, deadline))) {
        Ok(Some(out)) => out,
        Ok(None) => Err(wasmtime::Error::new(DeadlinePassed)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            Err(wasmtime::format_err!("host panicked while serving the plugin: {msg}"))
        }
    }
}

/// Epoch ticks covering `budget`, plus one for the tick already in progress.
fn ticks(budget: Duration, tick: Duration) -> u64 {
    let tick_ns = tick.as_nanos().max(1);
    (budget.as_nanos().div_ceil(tick_ns) as u64).saturating_add(1)
}

/// Maps a failed call to the error a scenario reports.
fn classify(e: wasmtime::Error, store: &Store<HostState>, stage: Stage, budget: Duration, cap_bytes: usize) -> PluginError {
    let budget_ms = budget.as_millis() as u64;
    if e.downcast_ref::<DeadlinePassed>().is_some() {
        return PluginError::BudgetExhausted { budget_ms };
    }
    let trap = e.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::Interrupt | Trap::OutOfFuel) => return PluginError::BudgetExhausted { budget_ms },
        _ if store.data().limiter.hit_cap() => {
            return match store.data().limiter.pool_cap() {
                Some(cap_bytes) => PluginError::TenantMemory { cap_bytes },
                None => PluginError::MemoryExhausted { cap_bytes },
            };
        }
        _ => {}
    }
    let what = match trap {
        Some(t) => t.to_string(),
        // Not a wasm trap: the root cause, without wasmtime's backtrace.
        None => e.root_cause().to_string(),
    };
    let stderr = store.data().stderr.text();
    let msg = if stderr.is_empty() { what } else { format!("{what}; guest stderr: {}", last_lines(&stderr, 3)) };
    match (stage, trap) {
        (Stage::Instantiate, None) => PluginError::Instantiate(msg),
        _ => PluginError::Trap(msg),
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_add_one() {
        assert_eq!(ticks(Duration::from_millis(10), Duration::from_millis(2)), 6);
        assert_eq!(ticks(Duration::from_millis(11), Duration::from_millis(2)), 7);
        assert_eq!(ticks(Duration::ZERO, Duration::from_millis(2)), 1);
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\n\nb\nc\nd\n", 2), "c | d");
        assert_eq!(last_lines("only", 3), "only");
    }
}
