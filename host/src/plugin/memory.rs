//! Per-tenant cap on the linear memory of all of a tenant's plugin instances together (live,
//! shadow, fallback, and one being re-created), on top of the per-instance cap: a tenant with
//! many scenarios cannot take the host's memory 128 MiB at a time. Each store's limiter books
//! its growth here and gives it back when the store is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One tenant's plugin memory: bytes held by its instances and the most they may hold.
#[derive(Debug)]
pub struct TenantMemory {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl TenantMemory {
    pub fn new(limit: usize) -> Self {
        Self { limit: AtomicUsize::new(limit), used: AtomicUsize::new(0) }
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes held by the tenant's instances now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Books `bytes` more if that stays within the limit.
    pub fn try_grow(&self, bytes: usize) -> bool {
        let limit = self.limit();
        self.used.try_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(bytes).filter(|&n| n <= limit)).is_ok()
    }

    /// Gives back `bytes` a dropped store held.
    pub fn release(&self, bytes: usize) {
        let _ = self.used.try_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_booked_up_to_the_limit_and_released() {
        let m = TenantMemory::new(100);
        assert!(m.try_grow(60));
        assert!(!m.try_grow(41), "60 + 41 is over 100");
        assert!(m.try_grow(40));
        m.release(60);
        assert_eq!(m.used(), 40);
        m.set_limit(30);
        assert!(!m.try_grow(1), "a lowered limit refuses growth until enough is released");
    }
}
