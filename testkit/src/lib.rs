//! Shared code of rtscore's integration tests (`tests/it`) and benches (`host/benches`), on the
//! real local stack (Kafka, FerretDB, Redis) and the real `rtscore` binary:
//!
//! - [`stack`]: the local stack's addresses, the shared/exclusive gate the outage tests take,
//!   Kafka topics, producing and consuming, Redis, scenario documents in MongoDB;
//! - [`host`]: `rtscore run` as a typed builder ([`Host`]), the running process
//!   ([`HostProcess`]) and one-shot CLI calls ([`cli`]);
//! - [`sinks`]: reading JSONL sinks and Redis status hashes, comparing hot lists;
//! - [`fixtures`]: event lines, scenario directories, generated traffic;
//! - [`plugins`]: the plugin crates built for wasm32-wasip2, and window batches;
//! - [`web`]: a small HTTP client and a host with the admin API ([`web::ApiHost`]);
//! - [`browser`]: headless Chromium through chromedriver.
//!
//! Each test gets unique topic, database and tenant names ([`unique`]), so tests run in any order
//! and in parallel; waits poll a condition until a deadline ([`wait_until`]), never sleep a fixed
//! time. The everyday names are re-exported here: `use rtscore_testkit::*;`.

// Test support: a failed unwrap or expect is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod fixtures;
pub mod host;
pub mod plugins;
pub mod sinks;
pub mod stack;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use fixtures::{event_line, traffic, write_scenarios};
pub use host::{Host, HostProcess, cli, rtscore_command};
pub use sinks::{SinkWindows, check_against_reference, hot_differences, read_hot_sink, status_of};
pub use stack::{Stack, stack_cmd};
pub use web::http_get;

/// A bench's numeric knob: environment variable `name` if set to a number, else `default`
/// (an unparsable value falls back too, as the benches always did).
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The repository's root (this crate lives in `testkit/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit/ has a parent").to_path_buf()
}

/// The shared hot-score vectors: `events.jsonl`, `scenarios/`, `expected.jsonl`.
pub fn hot_vectors() -> PathBuf {
    repo_root().join("tests/vectors/hot")
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
