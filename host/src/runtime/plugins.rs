//! Keeps every scenario's scorer on the module its config references: loads them all before the
//! first event (so a replay is deterministic), then swaps modules without a restart when a
//! reference changes or the registry sees a new module. Compilation happens off the event path;
//! the event path only installs finished instances.

use std::collections::HashMap;

use tokio::sync::{broadcast, mpsc};

use crate::config::mongo::MongoScenarioStore;
use crate::config::plugin_limits::SandboxLimits;
use crate::config::tenant::TenantTable;
use crate::config::{PluginRef, ScenarioKey};
use crate::pipeline::job_plugins::JobPlugins;
use crate::pipeline::{Pipeline, ScenarioHot};
use crate::plugin::{
    Grants, JobPlugin, PluginEngine, PluginError, PluginInstance, PluginLoader, PluginRegistry, PluginWorld, RegistryChange, ScenarioScorer,
};

/// Which of a scenario's scorers a reference is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The config in force.
    Live,
    /// A revision waiting for its effective window end (loaded ahead, so the switch is exact).
    Pending,
    /// The shadow candidate.
    Shadow,
    /// The metrics job's plugin (`metrics.plugin`).
    Metrics,
    /// The metrics plugin of a revision waiting for its effective window end.
    MetricsPending,
    /// The candidate's metrics plugin (`candidate.metrics.plugin`).
    MetricsShadow,
    /// The profile job's plugin (`user_profile.plugin`).
    Profile,
    /// The profile plugin of a revision waiting for its effective time.
    ProfilePending,
    /// The candidate's profile plugin (`candidate.user_profile.plugin`).
    ProfileShadow,
}

impl Lane {
    /// The world a module referenced for this lane must implement.
    fn world(self) -> PluginWorld {
        match self {
            Lane::Live | Lane::Pending | Lane::Shadow => PluginWorld::Scorer,
            Lane::Metrics | Lane::MetricsPending | Lane::MetricsShadow => PluginWorld::Metrics,
            Lane::Profile | Lane::ProfilePending | Lane::ProfileShadow => PluginWorld::Profile,
        }
    }

    /// Whether a job's plugin (metrics, profile) holds this lane, rather than a hot-score scorer.
    fn is_job(self) -> bool {
        self.world() != PluginWorld::Scorer
    }

    /// The lane a waiting revision's plugin moves to when the revision switches.
    fn promoted_to(self) -> Option<Lane> {
        match self {
            Lane::Pending => Some(Lane::Live),
            Lane::MetricsPending => Some(Lane::Metrics),
            Lane::ProfilePending => Some(Lane::Profile),
            _ => None,
        }
    }
}

/// What the coordinator does with a lane's plugin, whichever job holds it.
trait Holder {
    fn state_name(&self) -> &'static str;
    fn set_loading(&mut self, label: String);
    fn install(&mut self, instance: PluginInstance);
    fn load_failed(&mut self, label: String, error: &PluginError);
    fn clear(&mut self);
    fn active_sha256(&self) -> Option<&str>;
}

macro_rules! holder_impl {
    ($t:ty) => {
        impl Holder for $t {
            fn state_name(&self) -> &'static str {
                self.state().name()
            }
            fn set_loading(&mut self, label: String) {
                <$t>::set_loading(self, label)
            }
            fn install(&mut self, instance: PluginInstance) {
                <$t>::install(self, instance)
            }
            fn load_failed(&mut self, label: String, error: &PluginError) {
                <$t>::load_failed(self, label, error)
            }
            fn clear(&mut self) {
                <$t>::clear(self)
            }
            fn active_sha256(&self) -> Option<&str> {
                <$t>::active_sha256(self)
            }
        }
    };
}

holder_impl!(ScenarioScorer);
holder_impl!(JobPlugin);

/// The plugin holder of a scenario lane: a hot-score scorer or a job's plugin.
fn holder<'p>(pipeline: &'p mut Pipeline, key: &ScenarioKey, lane: Lane) -> Option<&'p mut dyn Holder> {
    if lane.is_job() {
        job_lanes(job_plugins(pipeline, key, lane)?).into_iter().find(|(l, _, _)| *l == lane).map(|(_, _, p)| p as &mut dyn Holder)
    } else {
        scorer(pipeline, key, lane).map(|s| s as &mut dyn Holder)
    }
}

/// The metrics or profile job's plugin lanes of a scenario, by the lane's world.
fn job_plugins<'p>(pipeline: &'p mut Pipeline, key: &ScenarioKey, lane: Lane) -> Option<&'p mut JobPlugins> {
    match lane.world() {
        PluginWorld::Metrics => Some(&mut pipeline.metrics_job_mut().scenario_mut(key)?.plugins),
        PluginWorld::Profile => Some(&mut pipeline.profile_job_mut().scenario_mut(key)?.plugins),
        PluginWorld::Scorer => None,
    }
}

/// A job's lanes (live, waiting, shadow), each with the reference it should run.
fn job_lanes(p: &mut JobPlugins) -> Vec<(Lane, Option<PluginRef>, &mut JobPlugin)> {
    let (live, pending, shadow) = match p.live.world() {
        PluginWorld::Metrics => (Lane::Metrics, Lane::MetricsPending, Lane::MetricsShadow),
        _ => (Lane::Profile, Lane::ProfilePending, Lane::ProfileShadow),
    };
    let in_force = p.in_force().cloned();
    let mut v = vec![(live, in_force, &mut p.live)];
    if let Some((r, j)) = p.pending.as_mut() {
        v.push((pending, Some(r.clone()), j));
    }
    if let Some((r, j)) = p.shadow.as_mut() {
        v.push((shadow, Some(r.clone()), j));
    }
    v
}

/// Each lane's scorer and the plugin reference it should run.
fn lanes(s: &mut ScenarioHot) -> Vec<(Lane, Option<PluginRef>, &mut ScenarioScorer)> {
    let live = s.config.hot_score.plugin.clone();
    let mut v = Vec::new();
    if let Some(p) = s.pending.as_mut() {
        // A pending revision on the live reference switches to the live scorer.
        if p.config.hot_score.plugin != live {
            v.push((Lane::Pending, p.config.hot_score.plugin.clone(), &mut p.scorer));
        }
    }
    if let Some(sh) = s.shadow.as_mut() {
        v.push((Lane::Shadow, sh.hot.plugin.clone(), &mut sh.scorer));
    }
    v.push((Lane::Live, live, &mut s.scorer));
    v
}

fn scorer<'p>(pipeline: &'p mut Pipeline, key: &ScenarioKey, lane: Lane) -> Option<&'p mut ScenarioScorer> {
    let s = pipeline.hot_job_mut().scenario_mut(key)?;
    lanes(s).into_iter().find(|(l, _, _)| *l == lane).map(|(_, _, sc)| sc)
}

/// A finished preparation, sent back to the event loop.
pub struct Prepared {
    key: ScenarioKey,
    lane: Lane,
    reference: PluginRef,
    result: Result<PluginInstance, PluginError>,
}

pub struct PluginCoordinator {
    loader: PluginLoader,
    /// The reference each scenario lane's scorer was last asked to run.
    wanted: HashMap<(ScenarioKey, Lane), PluginRef>,
    /// Tenant quotas the instances are prepared under.
    tenants: TenantTable,
    done_tx: mpsc::Sender<Prepared>,
    pub done_rx: mpsc::Receiver<Prepared>,
    pub changes: broadcast::Receiver<RegistryChange>,
}

impl PluginCoordinator {
    pub async fn start(
        plugins_dir: &std::path::Path,
        cache_dir: Option<&std::path::Path>,
        mongo: Option<&MongoScenarioStore>,
    ) -> anyhow::Result<Self> {
        let engine = PluginEngine::with_disk_cache(SandboxLimits::default(), Grants::default(), cache_dir)?;
        let registry = PluginRegistry::new();
        registry.watch_dir(plugins_dir).await?;
        #[cfg(not(feature = "mongodb"))]
        let _ = mongo;
        #[cfg(feature = "mongodb")]
        if let Some(m) = mongo {
            registry.poll_mongo(m.plugins(), std::time::Duration::from_secs(1)).await?;
        }
        let loader = PluginLoader::new(engine, registry);
        let changes = loader.subscribe();
        let (done_tx, done_rx) = mpsc::channel(64);
        Ok(Self { loader, wanted: HashMap::new(), tenants: TenantTable::default(), done_tx, done_rx, changes })
    }

    /// Another pipeline's coordinator (`--threads`) over the same loader: the same registry,
    /// compiled modules and tenants' plugin CPU and memory accounts (a tenant's bound holds for
    /// the host, not per pipeline); its own instances.
    pub fn sibling(&self) -> Self {
        let (done_tx, done_rx) = mpsc::channel(64);
        let changes = self.loader.subscribe();
        Self { loader: self.loader.clone(), wanted: HashMap::new(), tenants: TenantTable::default(), done_tx, done_rx, changes }
    }

    /// Takes new tenant quotas: the instances of tenants whose quotas changed are prepared
    /// again at the next [`Self::sync`].
    pub fn set_tenants(&mut self, tenants: &TenantTable) {
        if *tenants == self.tenants {
            return;
        }
        let old = std::mem::replace(&mut self.tenants, tenants.clone());
        self.wanted.retain(|(k, _), _| old.get(&k.tenant_id) == self.tenants.get(&k.tenant_id));
    }

    /// Brings every scenario's scorers (live, pending, shadow) in line with its config. With
    /// `wait`, modules are loaded before returning (start-up); otherwise they load in the
    /// background and are installed by [`Self::installed`] when ready, while the current scorer
    /// keeps scoring.
    pub async fn sync(&mut self, pipeline: &mut Pipeline, wait: bool) {
        let mut desired: Vec<((ScenarioKey, Lane), Option<PluginRef>, bool)> = Vec::new();
        for s in pipeline.hot_job_mut().scenarios_mut() {
            let key = s.config.key.clone();
            for (lane, reference, scorer) in lanes(s) {
                // A recreated scenario or lane has a fresh scorer: it needs its module again.
                let fresh = Holder::state_name(scorer) == "none";
                desired.push(((key.clone(), lane), reference, fresh));
            }
        }
        let mut job_desired = |key: &ScenarioKey, plugins: &mut JobPlugins| {
            for (lane, reference, plugin) in job_lanes(plugins) {
                let fresh = plugin.state().name() == "none";
                desired.push(((key.clone(), lane), reference, fresh));
            }
        };
        for s in pipeline.metrics_job_mut().scenarios_mut() {
            job_desired(&s.config.key, &mut s.plugins);
        }
        for s in pipeline.profile_job_mut().scenarios_mut() {
            job_desired(&s.config.key, &mut s.plugins);
        }
        // A pending revision that became live took its scorer or plugin along.
        let promoted: Vec<((ScenarioKey, Lane), PluginRef)> = self
            .wanted
            .iter()
            .filter_map(|((k, lane), r)| {
                let to = lane.promoted_to()?;
                let moved = !desired.iter().any(|(d, _, _)| d == &(k.clone(), *lane))
                    && desired.iter().any(|(d, want, _)| d == &(k.clone(), to) && want.as_ref() == Some(r));
                moved.then(|| ((k.clone(), to), r.clone()))
            })
            .collect();
        for (slot, r) in promoted {
            self.wanted.insert(slot, r);
        }
        self.wanted.retain(|k, _| desired.iter().any(|(d, _, _)| d == k));
        for (slot, reference, fresh) in desired {
            match reference {
                None => {
                    if self.wanted.remove(&slot).is_some()
                        && let Some(sc) = holder(pipeline, &slot.0, slot.1)
                    {
                        sc.clear();
                    }
                }
                Some(r) => {
                    if self.wanted.get(&slot) == Some(&r) && !fresh {
                        continue;
                    }
                    self.load(pipeline, slot, r, wait).await;
                }
            }
        }
    }

    /// Re-loads the scenario lanes whose referenced module changed in the registry.
    pub async fn registry_changed(&mut self, change: Result<RegistryChange, broadcast::error::RecvError>, pipeline: &mut Pipeline) {
        let affected: Vec<((ScenarioKey, Lane), PluginRef)> = self
            .wanted
            .iter()
            .filter(|(_, r)| change.as_ref().map_or(true, |c| c.affects(r)))
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (slot, r) in affected {
            let active = holder(pipeline, &slot.0, slot.1).and_then(|s| s.active_sha256().map(str::to_string));
            // A pinned reference already running its module has nothing to gain.
            if r.sha256.is_some() && active.as_deref() == r.sha256.as_deref() {
                continue;
            }
            tracing::info!(scenario = %slot.0, lane = ?slot.1, plugin = %r.label(), "plugin module changed; reloading");
            self.load(pipeline, slot, r, false).await;
        }
    }

    async fn load(&mut self, pipeline: &mut Pipeline, (key, lane): (ScenarioKey, Lane), r: PluginRef, wait: bool) {
        self.wanted.insert((key.clone(), lane), r.clone());
        if let Some(s) = holder(pipeline, &key, lane) {
            s.set_loading(r.label());
        }
        let loader = self.loader.clone();
        let quotas = self.tenants.get(&key.tenant_id).clone();
        let world = lane.world();
        if wait {
            let result = loader.prepare_world(&key, &r, &quotas, world).await;
            self.installed(Prepared { key, lane, reference: r, result }, pipeline);
        } else {
            let tx = self.done_tx.clone();
            tokio::spawn(async move {
                let result = loader.prepare_world(&key, &r, &quotas, world).await;
                let _ = tx.send(Prepared { key, lane, reference: r, result }).await;
            });
        }
    }

    /// The reference a live lane of the scenario runs now, from the pipeline.
    fn lane_reference(pipeline: &mut Pipeline, key: &ScenarioKey, lane: Lane) -> Option<PluginRef> {
        if !lane.is_job() {
            return pipeline.hot_job().scenario(key).and_then(|s| s.config.hot_score.plugin.clone());
        }
        job_lanes(job_plugins(pipeline, key, lane)?).into_iter().find(|(l, _, _)| *l == lane).and_then(|(_, r, _)| r)
    }

    /// Installs a finished preparation, unless the lane has moved on to another reference. A
    /// pending revision may have become live while its module was prepared: it then goes to
    /// the live scorer (which is the pending one, moved).
    pub fn installed(&mut self, p: Prepared, pipeline: &mut Pipeline) {
        if self.wanted.get(&(p.key.clone(), p.lane)) != Some(&p.reference) {
            return;
        }
        // The revision may have switched while its module was prepared: the module then goes
        // to the live lane (which is the pending one, moved), if that runs the same reference.
        let lane = match p.lane.promoted_to() {
            Some(live) if holder(pipeline, &p.key, p.lane).is_none() => {
                if Self::lane_reference(pipeline, &p.key, live).as_ref() != Some(&p.reference) {
                    return;
                }
                self.wanted.remove(&(p.key.clone(), p.lane));
                self.wanted.insert((p.key.clone(), live), p.reference.clone());
                live
            }
            _ => p.lane,
        };
        // A job's plugin records its own errors; a hot-score lane's go to the scenario's status.
        if !lane.is_job() {
            let Some(s) = pipeline.hot_job_mut().scenario_mut(&p.key) else { return };
            let error_slot = match lane {
                Lane::Shadow => s.shadow.as_mut().map(|sh| &mut sh.last_plugin_error),
                _ => Some(&mut s.last_plugin_error),
            };
            let err = p.result.as_ref().err().map(|e| e.to_string());
            match (error_slot, err) {
                (Some(slot), Some(e)) => *slot = Some(e),
                // A module installed for the lane it serves ends that lane's old error (a module
                // published after a reference to it failed): status must not show it as current.
                (Some(slot), None) if lane != Lane::Pending => *slot = None,
                _ => {}
            }
        }
        let Some(sc) = holder(pipeline, &p.key, lane) else { return };
        match p.result {
            Ok(instance) => {
                tracing::info!(scenario = %p.key, lane = ?lane, plugin = %p.reference.label(), sha256 = instance.sha256(), "plugin installed");
                if p.reference.sha256.is_none() {
                    tracing::warn!(scenario = %p.key, plugin = %p.reference.label(), "unpinned plugin reference (no sha256): fine for development, pin it in production");
                }
                sc.install(instance);
            }
            Err(e) => {
                tracing::error!(scenario = %p.key, lane = ?lane, plugin = %p.reference.label(), error = %crate::text::cap_error(&e.to_string()), "plugin could not be loaded; scoring with the previous module or the built-in formula");
                sc.load_failed(p.reference.label(), &e);
            }
        }
        self.loader.engine().purge_unused();
    }
}
