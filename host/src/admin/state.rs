//! What the admin API and the console work on: the scenario and plugin services, the bearer
//! tokens, the live view, and the host-wide limits on what callers send and hold. Opened once
//! by the runtime and shared by both front ends.

use std::sync::Arc;

use super::auth::{Scope, TokenStore};
use super::plugins::PluginTarget;
use super::streams::StreamSlots;
use super::{CompileLimits, PluginService, ScenarioService};
use crate::config::mongo::MongoScenarioStore;
use crate::config::store::{ConfigSource, ScenarioStore};
use crate::settings::Settings;
use crate::sinks::live::{HostLive, LiveView};

/// What the API and the console work on.
#[derive(Clone)]
pub struct AdminState {
    pub scenarios: Arc<ScenarioService>,
    pub plugins: Arc<PluginService>,
    pub tokens: Arc<TokenStore>,
    pub live: LiveView,
    /// Where hosts report their progress (`--redis-url`): writes take effect from the first
    /// window end past it (the fleet-synchronised switch, docs/rollout.md).
    pub redis_url: Option<String>,
    pub limits: ApiLimits,
    /// The console's open live streams.
    pub streams: Arc<StreamSlots>,
}

/// Host-wide limits on what API and console callers send and hold (`rtscore run` flags;
/// docs/security.md). Per-tenant upload quotas live in the tenant document.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest request body of a route other than a plugin upload.
    pub max_body_bytes: usize,
    pub compile: CompileLimits,
    pub max_streams: usize,
    pub max_streams_per_login: usize,
    /// Largest live console update.
    pub max_event_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            compile: CompileLimits::default(),
            max_streams: 64,
            max_streams_per_login: 8,
            max_event_bytes: 256 << 10,
        }
    }
}

impl AdminState {
    /// Works on the stores the runtime reads: the scenario directory, or the run's MongoDB
    /// client `mongo` (plugins to MongoDB in a fleet, else the plugins directory), with the
    /// tokens and limits of `settings.http`.
    pub fn open(settings: &Settings, mongo: Option<MongoScenarioStore>, live: LiveView) -> anyhow::Result<Self> {
        let (store, target) = match (&settings.store.source, mongo) {
            #[cfg(feature = "mongodb")]
            (ConfigSource::Mongo(_), Some(m)) => {
                let plugins = m.plugins();
                (ScenarioStore::Mongo(m), PluginTarget::Mongo(plugins))
            }
            (ConfigSource::Dir(dir), _) => (ScenarioStore::Dir(dir.clone()), PluginTarget::Dir(settings.plugins_dir.clone())),
            (ConfigSource::Mongo(url), _) => anyhow::bail!("the admin API needs the MongoDB client of {url}"),
        };
        let http = settings.http.as_ref();
        if http.is_none_or(|h| h.tokens_file.is_none()) {
            tracing::warn!("no --api-tokens-file: the admin API and console refuse every request (create one with `rtscore token create`)");
        }
        let limits = http.map(|h| h.limits).unwrap_or_default();
        let plugins = Arc::new(PluginService::with_limits(target, limits.compile));
        Ok(Self {
            scenarios: Arc::new(ScenarioService::new(store).with_plugin_namespace(Arc::clone(&plugins))),
            plugins,
            tokens: Arc::new(TokenStore::new(http.and_then(|h| h.tokens_file.clone()))),
            live,
            redis_url: settings.outputs.redis_url.clone(),
            limits,
            streams: Arc::new(StreamSlots::new(limits.max_streams, limits.max_streams_per_login)),
        })
    }

    /// The counters a scope may see: host-wide for admin; for a tenant, the sums of its own
    /// scenarios only (host totals would tell it how busy the other tenants are).
    pub fn visible_counters(&self, scope: &Scope) -> HostLive {
        let Some(tenant) = scope.tenant() else { return self.live.host() };
        let mut c = HostLive { state_bytes: self.live.tenant_state_bytes(tenant), ..HostLive::default() };
        for (_, s) in self.live.scenarios(Some(tenant)) {
            c.rejected += s.rejected;
            if let Some(r) = &s.status {
                c.events_in += r.events;
                c.late += r.late;
                c.over_quota += r.over_quota;
            }
        }
        c
    }
}
