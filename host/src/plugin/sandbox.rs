//! What a plugin instance may use: its limits ([`SandboxLimits`], configured in
//! `config::plugin_limits`) enforced, and a WASI context that grants nothing (no files,
//! network, environment, arguments or real clocks by default).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::memory::TenantMemory;
use crate::config::plugin_limits::SandboxLimits;

/// Capabilities a host may grant on top of the deny-all sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// Real wall clock instead of one frozen at the Unix epoch.
    pub wall_clock: bool,
    /// Real monotonic clock instead of one that never advances.
    pub monotonic_clock: bool,
}

/// The data of one plugin store: its WASI context (granting nothing), resource table, limiter
/// and the captured tail of its stderr.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: SandboxLimiter,
    pub(crate) stderr: StderrTail,
}

impl HostState {
    pub fn new(limits: &SandboxLimits, grants: Grants) -> Self {
        let stderr = StderrTail::new(limits.stderr_bytes);
        let mut b = WasiCtxBuilder::new();
        // The builder's defaults already give no preopens, env or args and deny every socket
        // address; these make the rest explicit.
        b.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Seeded randomness keeps replays deterministic (a plugin's HashMap order included).
            .secure_random(wasmtime_wasi::Deterministic::new(SEED.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(SEED.to_vec()))
            .insecure_random_seed(0x5eed)
            .max_random_size(1 << 16);
        if !grants.wall_clock {
            b.wall_clock(FrozenWallClock);
        }
        if !grants.monotonic_clock {
            b.monotonic_clock(FrozenMonotonicClock);
        }
        Self { wasi: b.build(), table: ResourceTable::new(), limiter: SandboxLimiter::new(limits), stderr }
    }
}

const SEED: [u8; 32] = *b"rtscore plugin sandbox seed 0001";

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Memory and table caps of one store; remembers whether the guest hit them, so a trap that
/// follows (Rust aborts when an allocation fails) is reported as memory exhaustion.
pub struct SandboxLimiter {
    memory_bytes: usize,
    table_elements: usize,
    denied: Arc<AtomicBool>,
    /// The tenant's memory over all its instances, and what this store booked there.
    pool: Option<Arc<TenantMemory>>,
    booked: usize,
    pool_denied: bool,
}

impl SandboxLimiter {
    fn new(limits: &SandboxLimits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            denied: Arc::new(AtomicBool::new(false)),
            pool: None,
            booked: 0,
            pool_denied: false,
        }
    }

    /// Books this store's memory growth in its tenant's pool too.
    pub(crate) fn set_pool(&mut self, pool: Arc<TenantMemory>) {
        self.pool = Some(pool);
    }

    /// The tenant's pool limit, when the last refusal was the pool's rather than the instance's.
    pub fn pool_cap(&self) -> Option<usize> {
        self.pool.as_ref().filter(|_| self.pool_denied).map(|p| p.limit())
    }

    /// Whether a growth was refused since the last [`SandboxLimiter::reset`].
    pub fn hit_cap(&self) -> bool {
        self.denied.load(Ordering::Relaxed)
    }

    pub fn reset(&mut self) {
        self.denied.store(false, Ordering::Relaxed);
        self.pool_denied = false;
    }
}

impl Drop for SandboxLimiter {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.release(self.booked);
        }
    }
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let mut ok = desired <= self.memory_bytes;
        if ok && let Some(pool) = &self.pool {
            let grow = desired.saturating_sub(current);
            ok = pool.try_grow(grow);
            if ok {
                self.booked += grow;
            } else {
                self.pool_denied = true;
            }
        }
        if !ok {
            self.denied.store(true, Ordering::Relaxed);
        }
        Ok(ok)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let ok = desired <= self.table_elements;
        if !ok {
            self.denied.store(true, Ordering::Relaxed);
        }
        Ok(ok)
    }

    // A component of one module needs a handful of core instances, tables and memories;
    // anything much larger is not a scoring plugin.
    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// A wall clock stuck at the Unix epoch: plugins must score from the batch's own times.
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that never advances.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// Guest stderr: keeps the last `capacity` bytes and never blocks or fails, so a chatty plugin
/// cannot trap on a full pipe; the tail carries the panic message into trap errors.
#[derive(Clone)]
pub struct StderrTail {
    capacity: usize,
    buf: Arc<Mutex<VecDeque<u8>>>,
}

impl StderrTail {
    fn new(capacity: usize) -> Self {
        Self { capacity, buf: Arc::new(Mutex::new(VecDeque::new())) }
    }

    fn push(&self, bytes: &[u8]) {
        let Ok(mut buf) = self.buf.lock() else { return };
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        buf.extend(bytes);
        let excess = buf.len().saturating_sub(self.capacity);
        buf.drain(..excess);
    }

    /// The captured text, trimmed; empty when the guest wrote nothing.
    pub fn text(&self) -> String {
        let Ok(buf) = self.buf.lock() else { return String::new() };
        let (a, b) = buf.as_slices();
        let mut v = Vec::with_capacity(buf.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().to_string()
    }

    pub fn clear(&self) {
        if let Ok(mut buf) = self.buf.lock() {
            buf.clear();
        }
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_the_tail() {
        let s = StderrTail::new(8);
        s.push(b"hello ");
        s.push(b"world!");
        assert_eq!(s.text(), "o world!");
        s.push(b"0123456789abc");
        assert_eq!(s.text(), "56789abc");
        s.clear();
        assert_eq!(s.text(), "");
    }

    #[test]
    fn limiter_remembers_refusals() {
        let limits = SandboxLimits { memory_bytes: 1 << 20, table_elements: 10, ..SandboxLimits::default() };
        let mut l = SandboxLimiter::new(&limits);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.hit_cap());
        assert!(!l.memory_growing(0, (1 << 20) + 1, None).unwrap());
        assert!(l.hit_cap());
        l.reset();
        assert!(!l.table_growing(0, 11, None).unwrap());
        assert!(l.hit_cap());
    }
}
