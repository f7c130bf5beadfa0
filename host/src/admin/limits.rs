//! Abuse limits on what tenants send through the admin API (docs/security.md): upload rate
//! and concurrent compiles per tenant, and a memory of modules that failed to compile (their
//! errors capped by [`crate::text::cap_error`]). Pure bookkeeping; `admin::plugins` applies it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::text::cap_error;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent between statements: a panic elsewhere must not disable limits.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// At most `limit` uploads per tenant in any sliding minute.
#[derive(Default)]
pub struct UploadRate {
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(60);

impl UploadRate {
    /// Counts one upload of `tenant` at `now`, or says how long to wait (the `Retry-After`)
    /// when `limit` uploads already fall in the last minute. Refused attempts are not counted.
    pub fn admit(&self, tenant: &str, limit: u32, now: Instant) -> Result<(), Duration> {
        let mut recent = lock(&self.recent);
        // Forget tenants with nothing in the window, so the map holds only active uploaders.
        recent.retain(|_, q| {
            while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW) {
                q.pop_front();
            }
            !q.is_empty()
        });
        let q = recent.entry(tenant.to_string()).or_default();
        if q.len() >= limit as usize {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(RATE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }
}

/// Compiles running per tenant.
#[derive(Default, Clone)]
pub struct CompileSlots {
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// One running compile; dropping it frees the slot.
pub struct CompileSlot {
    slots: CompileSlots,
    tenant: String,
}

impl CompileSlots {
    /// A slot for `tenant` if fewer than `limit` of its compiles run, else `None`.
    pub fn try_acquire(&self, tenant: &str, limit: usize) -> Option<CompileSlot> {
        let mut running = lock(&self.running);
        let n = running.entry(tenant.to_string()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(CompileSlot { slots: self.clone(), tenant: tenant.to_string() })
    }

    pub fn running(&self, tenant: &str) -> usize {
        lock(&self.running).get(tenant).copied().unwrap_or(0)
    }
}

impl Drop for CompileSlot {
    fn drop(&mut self) {
        let mut running = lock(&self.slots.running);
        if let Some(n) = running.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

/// The errors of modules that failed to compile, by sha256, least recently used first out.
/// A module that failed once fails again (same engine, same bytes): it is refused at once.
pub struct FailedCompiles {
    capacity: usize,
    inner: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl FailedCompiles {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    /// The remembered error of `sha256`, marking it recently used.
    pub fn get(&self, sha256: &str) -> Option<String> {
        let mut guard = lock(&self.inner);
        let (map, order) = &mut *guard;
        let err = map.get(sha256)?.clone();
        if let Some(pos) = order.iter().position(|k| k == sha256) {
            order.remove(pos);
        }
        order.push_back(sha256.to_string());
        Some(err)
    }

    pub fn insert(&self, sha256: &str, error: &str) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = lock(&self.inner);
        let (map, order) = &mut *guard;
        if map.insert(sha256.to_string(), cap_error(error)).is_some() {
            order.retain(|k| k != sha256);
        }
        order.push_back(sha256.to_string());
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::MAX_ERROR_BYTES;

    #[test]
    fn uploads_are_limited_per_tenant_per_sliding_minute() {
        let rate = UploadRate::default();
        let t0 = Instant::now();
        assert!(rate.admit("a", 2, t0).is_ok());
        assert!(rate.admit("a", 2, t0 + Duration::from_secs(10)).is_ok());
        let wait = rate.admit("a", 2, t0 + Duration::from_secs(20)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(40), "until the first upload leaves the window");
        assert!(rate.admit("b", 2, t0 + Duration::from_secs(20)).is_ok(), "another tenant is not affected");
        assert!(rate.admit("a", 2, t0 + Duration::from_secs(60)).is_ok(), "the first one has left the window");
        assert!(rate.admit("a", 2, t0 + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn compile_slots_are_per_tenant_and_freed_on_drop() {
        let slots = CompileSlots::default();
        let first = slots.try_acquire("a", 1).expect("a free slot");
        assert!(slots.try_acquire("a", 1).is_none(), "a second concurrent compile of the same tenant");
        assert!(slots.try_acquire("b", 1).is_some(), "another tenant compiles meanwhile");
        assert_eq!(slots.running("a"), 1);
        drop(first);
        assert_eq!(slots.running("a"), 0);
        assert!(slots.try_acquire("a", 1).is_some());
    }

    #[test]
    fn failed_compiles_are_bounded_least_recently_used_first_out() {
        let cache = FailedCompiles::new(2);
        cache.insert("x", "bad x");
        cache.insert("y", "bad y");
        assert_eq!(cache.get("x").as_deref(), Some("bad x"));
        cache.insert("z", "bad z");
        assert_eq!((cache.get("y"), cache.len()), (None, 2), "y was the least recently used");
        assert!(cache.get("x").is_some() && cache.get("z").is_some());
        cache.insert("long", &"e".repeat(10 * MAX_ERROR_BYTES));
        assert!(cache.get("long").unwrap().len() < MAX_ERROR_BYTES + 40);
        let off = FailedCompiles::new(0);
        off.insert("x", "bad");
        assert!(off.is_empty());
    }
}
