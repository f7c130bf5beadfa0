//! Prepares plugin instances off the event path: resolve the reference in the registry, verify
//! its hash, compile (cached) and instantiate on a blocking thread, configure with the params.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::broadcast;

use super::bindings::PluginWorld;
use super::cpu::CpuLedger;
use super::engine::PluginEngine;
use super::error::PluginError;
use super::instance::PluginInstance;
use super::memory::TenantMemory;
use super::registry::{PluginRegistry, RegistryChange};
use crate::config::tenant::TenantQuotas;
use crate::config::{PluginRef, ScenarioKey};

/// Loads plugin instances for the runtime: resolves a scenario's reference in the registry,
/// compiles (cached by the engine) and instantiates under the tenant's quotas, charging the
/// tenant's CPU and memory accounts.
#[derive(Clone)]
pub struct PluginLoader {
    engine: PluginEngine,
    registry: PluginRegistry,
    /// Every tenant's CPU use per minute, charged by the instances prepared here.
    cpu: CpuLedger,
    /// Every tenant's plugin memory, booked by the instances prepared here.
    memory: Arc<Mutex<HashMap<String, Arc<TenantMemory>>>>,
}

impl PluginLoader {
    pub fn new(engine: PluginEngine, registry: PluginRegistry) -> Self {
        Self { engine, registry, cpu: CpuLedger::default(), memory: Arc::default() }
    }

    /// The tenants' CPU accounts.
    pub fn cpu(&self) -> &CpuLedger {
        &self.cpu
    }

    /// `tenant`'s plugin memory pool, with its limit set to `limit`.
    pub fn tenant_memory(&self, tenant: &str, limit: usize) -> Arc<TenantMemory> {
        let mut pools = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = pools.entry(tenant.to_string()).or_insert_with(|| Arc::new(TenantMemory::new(limit)));
        pool.set_limit(limit);
        pool.clone()
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// Announcements of changed modules (see [`PluginRegistry::subscribe`]).
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryChange> {
        self.registry.subscribe()
    }

    /// A ready instance for scenario `key`'s reference `r`, for
    /// [`ScenarioScorer::install`](super::scorer::ScenarioScorer::install). The reference
    /// resolves in the namespace of the scenario's tenant (its own modules, then shared ones;
    /// see [`PluginRegistry::lookup_for`]). A pinned module already compiled is reused without
    /// reading it again.
    pub async fn prepare(&self, key: &ScenarioKey, r: &PluginRef) -> Result<PluginInstance, PluginError> {
        self.prepare_within(key, r, &TenantQuotas::default()).await
    }

    /// [`Self::prepare`] under the scenario's tenant quotas: module size, CPU budget per
    /// window and memory per instance.
    pub async fn prepare_within(&self, key: &ScenarioKey, r: &PluginRef, quotas: &TenantQuotas) -> Result<PluginInstance, PluginError> {
        self.prepare_world(key, r, quotas, PluginWorld::Scorer).await
    }

    /// [`Self::prepare_within`] for a reference of the section of `world` (`hot_score.plugin`,
    /// `metrics.plugin`, `user_profile.plugin`): a module of another world is refused with [`PluginError::WrongWorld`].
    pub async fn prepare_world(
        &self,
        key: &ScenarioKey,
        r: &PluginRef,
        quotas: &TenantQuotas,
        world: PluginWorld,
    ) -> Result<PluginInstance, PluginError> {
        let started = Instant::now();
        let label = r.label();
        let info = self.registry.lookup_for(&key.tenant_id, r)?;
        if info.size > quotas.max_module_bytes as u64 {
            return Err(PluginError::QuotaExceeded {
                quota: "max_module_bytes",
                detail: format!("module {label} is {} bytes, tenant {} allows {}", info.size, key.tenant_id, quotas.max_module_bytes),
            });
        }
        let compiled = match self.engine.compiled(&info.sha256).filter(|_| r.sha256.is_some()) {
            Some(hit) => hit,
            None => {
                let module = self.registry.resolve_for(&key.tenant_id, r).await?;
                let engine = self.engine.clone();
                tokio::task::spawn_blocking(move || engine.compile(&module.bytes))
                    .await
                    .map_err(|e| PluginError::Compile(format!("compile task failed: {e}")))??
            }
        };
        if compiled.world() != world {
            let found = compiled.world();
            return Err(PluginError::WrongWorld {
                reference: label,
                expected: world.name(),
                found: found.name(),
                section: world.section(),
                found_section: found.section(),
            });
        }
        let engine = self.engine.clone();
        let params = r.params.clone();
        let instance_label = label.clone();
        let limits = quotas.sandbox_limits(engine.limits());
        let cpu = self.cpu.tenant(&key.tenant_id, std::time::Duration::from_millis(quotas.cpu_ms_per_minute));
        let memory = self.tenant_memory(&key.tenant_id, quotas.max_plugin_memory_bytes);
        let instance = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let instance = engine.instantiate_for_tenant(compiled, instance_label, &params, limits, Some(memory));
            cpu.charge(started.elapsed());
            instance.map(|i| i.with_cpu(cpu))
        })
        .await
        .map_err(|e| PluginError::Instantiate(format!("instantiate task failed: {e}")))??;
        tracing::info!(scenario = %key, plugin = %label, sha256 = %instance.sha256(), ms = started.elapsed().as_millis() as u64,
            "plugin prepared");
        Ok(instance)
    }
}
