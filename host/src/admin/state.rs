//! What the admin API and the console work on: the scenario and plugin services, the bearer
//! tokens, the live view, and the host-wide limits on what callers send and hold. Opened once
//! per run from its settings (`runtime::admin_state`) and shared by both front ends.

use std::sync::Arc;

use super::auth::{Scope, TokenStore};
use super::streams::StreamSlots;
use super::{CompileLimits, PluginService, ScenarioService};
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
    /// The hosts' Redis key layout (`--redis-key-prefix`), where that progress is read.
    pub redis_keys: crate::config::redis_keys::KeyLayout,
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
