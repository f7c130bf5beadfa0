//! Caps on the console's live streams (server-sent events): how many are open on the host and
//! per login scope, so a tenant cannot hold the host's connections or render loop hostage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open streams, in total and per key (a login scope such as `tenant:shop` or `admin`).
pub struct StreamSlots {
    max_total: usize,
    max_per_key: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_key: HashMap<String, usize>,
}

/// One open stream; dropping it (the client went away, the token was revoked) frees the slot.
pub struct StreamSlot {
    open: Arc<Mutex<Open>>,
    key: String,
}

/// Why a stream was not opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefused {
    #[error("this host already serves {0} live console streams; close a console tab or try again later")]
    Host(usize),
    #[error("this login already has {0} live console streams open; close a console tab first")]
    Login(usize),
}

impl StreamSlots {
    pub fn new(max_total: usize, max_per_key: usize) -> Self {
        Self { max_total, max_per_key, open: Arc::default() }
    }

    pub fn try_open(&self, key: &str) -> Result<StreamSlot, StreamRefused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return Err(StreamRefused::Host(self.max_total));
        }
        let n = open.per_key.get(key).copied().unwrap_or(0);
        if n >= self.max_per_key {
            return Err(StreamRefused::Login(self.max_per_key));
        }
        open.total += 1;
        open.per_key.insert(key.to_string(), n + 1);
        Ok(StreamSlot { open: Arc::clone(&self.open), key: key.to_string() })
    }

    pub fn open_streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_key.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_login_and_in_total() {
        let slots = StreamSlots::new(3, 2);
        let a1 = slots.try_open("tenant:a").unwrap();
        let _a2 = slots.try_open("tenant:a").unwrap();
        assert_eq!(slots.try_open("tenant:a").err(), Some(StreamRefused::Login(2)));
        let _b = slots.try_open("tenant:b").unwrap();
        assert_eq!(slots.try_open("admin").err(), Some(StreamRefused::Host(3)));
        drop(a1);
        assert_eq!(slots.open_streams(), 2);
        assert!(slots.try_open("tenant:a").is_ok());
    }
}
