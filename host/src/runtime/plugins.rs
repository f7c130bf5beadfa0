//! Keeps every scenario's scorer on the module its config references: loads them all before the
//! first event (so a replay is deterministic), then swaps modules without a restart when a
//! reference changes or the registry sees a new module. Compilation happens off the event path;
//! the event path only installs finished instances.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use crate::config::mongo::MongoScenarioStore;
use crate::config::{PluginRef, ScenarioKey};
use crate::pipeline::Pipeline;
use crate::plugin::{Grants, PluginEngine, PluginError, PluginInstance, PluginManager, PluginRegistry, RegistryChange, SandboxLimits};

/// A finished preparation, sent back to the event loop.
pub struct Prepared {
    key: ScenarioKey,
    reference: PluginRef,
    result: Result<PluginInstance, PluginError>,
}

pub struct PluginCoordinator {
    manager: PluginManager,
    /// The reference each scenario's scorer was last asked to run.
    wanted: HashMap<ScenarioKey, PluginRef>,
    done_tx: mpsc::Sender<Prepared>,
    pub done_rx: mpsc::Receiver<Prepared>,
    pub changes: broadcast::Receiver<RegistryChange>,
}

impl PluginCoordinator {
    pub async fn start(plugins_dir: &std::path::Path, mongo: Option<&MongoScenarioStore>) -> anyhow::Result<Self> {
        let engine = PluginEngine::new(SandboxLimits::default(), Grants::default())?;
        let registry = PluginRegistry::new();
        registry.watch_dir(plugins_dir).await?;
        if let Some(m) = mongo {
            registry.poll_mongo(m.plugins(), Duration::from_secs(1)).await?;
        }
        let manager = PluginManager::new(engine, registry);
        let changes = manager.subscribe();
        let (done_tx, done_rx) = mpsc::channel(64);
        Ok(Self { manager, wanted: HashMap::new(), done_tx, done_rx, changes })
    }

    /// Brings every scenario's scorer in line with its config. With `wait`, modules are loaded
    /// before returning (start-up); otherwise they load in the background and are installed
    /// by [`Self::installed`] when ready, while the current scorer keeps scoring.
    pub async fn sync(&mut self, pipeline: &mut Pipeline, wait: bool) {
        let mut desired: Vec<(ScenarioKey, Option<PluginRef>)> = Vec::new();
        for s in pipeline.hot_job().scenarios() {
            desired.push((s.config.key.clone(), s.config.hot_score.plugin.clone()));
        }
        self.wanted.retain(|k, _| desired.iter().any(|(d, _)| d == k));
        for (key, reference) in desired {
            let fresh = pipeline.hot_job().scenario(&key).is_some_and(|s| s.scorer.state().name() == "none");
            match reference {
                None => {
                    if self.wanted.remove(&key).is_some()
                        && let Some(s) = pipeline.hot_job_mut().scenario_mut(&key)
                    {
                        s.scorer.clear();
                    }
                }
                Some(r) => {
                    // A recreated scenario has a fresh scorer: it needs its module again.
                    if self.wanted.get(&key) == Some(&r) && !fresh {
                        continue;
                    }
                    self.load(pipeline, key, r, wait).await;
                }
            }
        }
    }

    /// Re-loads the scenarios whose referenced module changed in the registry.
    pub async fn registry_changed(&mut self, change: Result<RegistryChange, broadcast::error::RecvError>, pipeline: &mut Pipeline) {
        let affected: Vec<(ScenarioKey, PluginRef)> = self
            .wanted
            .iter()
            .filter(|(_, r)| change.as_ref().map_or(true, |c| c.affects(r)))
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (key, r) in affected {
            let active = pipeline.hot_job().scenario(&key).and_then(|s| s.scorer.active_sha256().map(str::to_string));
            // A pinned reference already running its module has nothing to gain.
            if r.sha256.is_some() && active.as_deref() == r.sha256.as_deref() {
                continue;
            }
            tracing::info!(scenario = %key, plugin = %r.label(), "plugin module changed; reloading");
            self.load(pipeline, key, r, false).await;
        }
    }

    async fn load(&mut self, pipeline: &mut Pipeline, key: ScenarioKey, r: PluginRef, wait: bool) {
        self.wanted.insert(key.clone(), r.clone());
        if let Some(s) = pipeline.hot_job_mut().scenario_mut(&key) {
            s.scorer.set_loading(r.label());
        }
        let manager = self.manager.clone();
        if wait {
            let result = manager.prepare(&key, &r).await;
            self.installed(Prepared { key, reference: r, result }, pipeline);
        } else {
            let tx = self.done_tx.clone();
            tokio::spawn(async move {
                let result = manager.prepare(&key, &r).await;
                let _ = tx.send(Prepared { key, reference: r, result }).await;
            });
        }
    }

    /// Installs a finished preparation, unless the scenario has moved on to another reference.
    pub fn installed(&mut self, p: Prepared, pipeline: &mut Pipeline) {
        if self.wanted.get(&p.key) != Some(&p.reference) {
            return;
        }
        let Some(s) = pipeline.hot_job_mut().scenario_mut(&p.key) else { return };
        match p.result {
            Ok(instance) => {
                tracing::info!(scenario = %p.key, plugin = %p.reference.label(), sha256 = instance.sha256(), "plugin installed");
                if p.reference.sha256.is_none() {
                    tracing::warn!(scenario = %p.key, plugin = %p.reference.label(), "unpinned plugin reference (no sha256): fine for development, pin it in production");
                }
                s.scorer.install(instance);
            }
            Err(e) => {
                tracing::error!(scenario = %p.key, plugin = %p.reference.label(), error = %e, "plugin could not be loaded; scoring with the previous module or the built-in formula");
                s.last_plugin_error = Some(e.to_string());
                s.scorer.load_failed(p.reference.label(), &e);
            }
        }
        self.manager.engine().purge_unused();
    }
}
