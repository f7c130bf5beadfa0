//! Test plugin: probes the sandbox and reports what it could reach as scores, one probe per
//! item index (a batch needs `PROBES` items):
//!
//! | item | probe | sandboxed answer |
//! |---|---|---|
//! | 0 | `std::fs::read_dir("/")` | 0 (error); 1000 + entries if it saw the directory |
//! | 1 | `std::fs::read("/etc/hostname")` | 0 (error); 1000 if it read the file |
//! | 2 | wall clock, ms since the epoch | the frozen clock's value |
//! | 3 | monotonic clock, ns elapsed over busy work | 0 when frozen |
//! | 4 | number of environment variables | 0 |
//! | 5 | TCP connect to 127.0.0.1:9 | 0 (error); 1000 if it connected |
//! | 6 | number of program arguments | 0 |
//! | 7 | a `HashMap` hash of 42, mod 1e6 | the same in every instance (seeded randomness) |
//!
//! With params `{"report": true}`, `score` fails with the `read_dir` error message instead.

use std::hash::{BuildHasher, Hasher};
use std::time::{Instant, SystemTime};

use rtscore_guest::{Batch, Item, Scorer};
use serde::Deserialize;

pub const PROBES: usize = 8;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub report: bool,
}

pub struct Probe {
    report: bool,
}

fn probe(k: usize) -> f64 {
    match k {
        0 => std::fs::read_dir("/").map_or(0.0, |d| 1000.0 + d.count() as f64),
        1 => std::fs::read("/etc/hostname").map_or(0.0, |_| 1000.0),
        2 => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(-1.0, |d| d.as_millis() as f64),
        3 => {
            let t = Instant::now();
            let mut x = 0u64;
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x ^ i);
            }
            t.elapsed().as_nanos() as f64
        }
        4 => std::env::vars().count() as f64,
        5 => std::net::TcpStream::connect("127.0.0.1:9").map_or(0.0, |_| 1000.0),
        6 => std::env::args().count() as f64,
        7 => {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(42);
            (h.finish() % 1_000_000) as f64
        }
        _ => 0.0,
    }
}

impl Scorer for Probe {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        Ok(Self { report: p.report })
    }

    fn score_item(&self, item: &Item<'_>) -> f64 {
        probe(item.index())
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        if self.report {
            return match std::fs::read_dir("/") {
                Ok(_) => Err("read_dir(\"/\") succeeded".into()),
                Err(e) => Err(format!("read_dir(\"/\") failed: {e}")),
            };
        }
        out.extend(batch.items().map(|i| self.score_item(&i)));
        Ok(())
    }
}

rtscore_guest::export_scorer!(Probe);
