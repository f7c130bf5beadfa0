//! Per-tenant memory quotas as the jobs apply them (docs/security.md, "Memory"). Each scenario
//! state holds its tenant's [`MemoryLimits`]; an event that would add a new key (an item, a
//! remembered event id, a user) beyond them is refused with a `quota_*` reason and goes to the
//! dead-letter sink. Nothing held is ever evicted to make room, so a tenant at its quota keeps
//! scoring what it has, and no other tenant's state or output changes.

use crate::config::tenant::TenantQuotas;
use crate::event::QuotaKind;

/// The limits one scenario's state is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    pub max_items: usize,
    pub max_event_ids: usize,
    pub max_users: usize,
    /// The tenant's whole state is over `quotas.max_state_bytes` (checked every
    /// [`STATE_CHECK_MS`]): no new key of any kind until it is below again.
    pub state_full: bool,
}

/// How often (wall time) the tenants' state bytes are summed: the sum walks every user.
pub const STATE_CHECK_MS: i64 = 2_000;

impl Default for MemoryLimits {
    fn default() -> Self {
        Self::from(&TenantQuotas::default())
    }
}

impl From<&TenantQuotas> for MemoryLimits {
    fn from(q: &TenantQuotas) -> Self {
        Self {
            max_items: q.max_items_per_scenario,
            max_event_ids: q.max_event_ids_per_scenario,
            max_users: q.max_users_per_scenario,
            state_full: false,
        }
    }
}

impl MemoryLimits {
    /// The bound on new keys of a per-scenario quota, and the quota a refusal is reported as.
    #[inline]
    pub fn bound(&self, kind: QuotaKind) -> (usize, QuotaKind) {
        if self.state_full {
            return (0, QuotaKind::StateBytes);
        }
        let max = match kind {
            QuotaKind::Items => self.max_items,
            QuotaKind::EventIds => self.max_event_ids,
            QuotaKind::Users => self.max_users,
            QuotaKind::StateBytes => usize::MAX,
        };
        (max, kind)
    }
}
