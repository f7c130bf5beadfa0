//! Demo event generator for the embedded default: realistic traffic for the loaded scenarios —
//! Zipf item popularity, the eight seed actions in a funnel-like mix, categories and tags,
//! slight disorder — with event time running `time_scale` times faster than the wall clock so
//! windows close within seconds.

use std::io::Write;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use super::{SourceMessage, SourceSender};
use crate::config::ScenarioKey;
use crate::event::RecordBatch;

/// The eight seed actions and their share of traffic.
pub const ACTION_MIX: [(&str, f64); 8] = [
    ("impression", 0.50),
    ("view", 0.25),
    ("click", 0.12),
    ("like", 0.05),
    ("favorite", 0.03),
    ("comment", 0.02),
    ("share", 0.02),
    ("purchase", 0.01),
];
const CATEGORIES: [&str; 6] = ["sports", "music", "tech", "fashion", "food", "travel"];

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub scenarios: Vec<ScenarioKey>,
    pub events_per_second: u32,
    pub time_scale: f64,
    pub limit: Option<u64>,
    pub items_per_scenario: u64,
    pub seed: u64,
}

/// Deterministic event maker shared by the demo source and benchmarks.
pub struct EventMaker {
    rng: SmallRng,
    zipf: Zipf<f64>,
    scenarios: Vec<ScenarioKey>,
    cumulative: [f64; 8],
    items: u64,
    /// Every item equally popular instead of Zipf (to fill state with a whole catalogue).
    uniform: bool,
    line: Vec<u8>,
}

impl EventMaker {
    pub fn new(scenarios: Vec<ScenarioKey>, items: u64, seed: u64) -> Self {
        let mut acc = 0.0;
        let cumulative = ACTION_MIX.map(|(_, p)| {
            acc += p;
            acc
        });
        #[allow(clippy::expect_used, reason = "n >= 1 and s = 1.1 are parameters Zipf always takes")]
        let zipf = Zipf::new(items.max(1) as f64, 1.1).expect("valid Zipf parameters");
        Self {
            rng: SmallRng::seed_from_u64(seed),
            zipf,
            scenarios,
            cumulative,
            items: items.max(1),
            uniform: false,
            line: Vec::with_capacity(256),
        }
    }

    /// The same maker with every item equally popular: a bench that sizes state for a whole
    /// catalogue needs every item seen, which a Zipf tail never gives.
    #[must_use]
    pub fn with_uniform_items(mut self) -> Self {
        self.uniform = true;
        self
    }

    /// One event as a JSON line (without newline) at event time about `ts`.
    pub fn next_event(&mut self, ts: i64) -> &[u8] {
        let scenario = self.rng.random_range(0..self.scenarios.len());
        let key = &self.scenarios[scenario];
        // Each scenario ranks items differently, and the ranking drifts every 20 minutes of
        // event time, so hot lists differ between scenarios and change as the demo runs.
        let rank = if self.uniform { self.rng.random_range(1..=self.items) } else { self.zipf.sample(&mut self.rng) as u64 };
        let drift = ts.div_euclid(20 * 60_000) as u64;
        let item = (rank * 7_919 + scenario as u64 * 104_729 + drift * 31) % self.items;
        let user = self.rng.random_range(0..50_000u32);
        let p: f64 = self.rng.random();
        let action = self.cumulative.iter().position(|&c| p < c).map_or("purchase", |i| ACTION_MIX[i].0);
        let jitter = self.rng.random_range(0..3_000);
        let category = CATEGORIES[(item % CATEGORIES.len() as u64) as usize];
        self.line.clear();
        let _ = write!(
            self.line,
            r#"{{"tenant_id":"{}","scenario_id":"{}","user_id":"u{user}","item_id":"item-{item}","action":"{action}","ts":{},"category":"{category}","tags":["t{}"]"#,
            key.tenant_id,
            key.scenario_id,
            ts - jitter,
            item % 17
        );
        if action == "view" {
            let _ = write!(self.line, r#","watch_time_ms":{}"#, self.rng.random_range(500..120_000));
        }
        self.line.push(b'}');
        &self.line
    }
}

/// Runs on a thread of its own, like the file source: building a batch is CPU-bound, and on
/// the async workers it would delay the tasks that serve control (config watcher, HTTP).
pub fn spawn_generator(cfg: GeneratorConfig, tx: SourceSender) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::task::spawn_blocking(move || {
        if cfg.scenarios.is_empty() {
            tracing::warn!("no active scenarios: the generator has nothing to generate (add documents to --scenarios-dir)");
            return Ok(());
        }
        let mut maker = EventMaker::new(cfg.scenarios.clone(), cfg.items_per_scenario, cfg.seed);
        let start_wall = Instant::now();
        let start_ts = chrono::Utc::now().timestamp_millis();
        let per_tick = (cfg.events_per_second / 20).max(1) as u64;
        let tick = Duration::from_millis(50);
        let mut sent = 0u64;
        for n in 1u32.. {
            let mut batch = RecordBatch::with_capacity(per_tick as usize, per_tick as usize * 200);
            let ts = start_ts + (start_wall.elapsed().as_millis() as f64 * cfg.time_scale) as i64;
            for _ in 0..per_tick {
                batch.push(maker.next_event(ts));
            }
            sent += per_tick;
            if tx.blocking_send(SourceMessage::Records(batch)).is_err() {
                return Ok(());
            }
            // A pipeline slower than the rate holds the sends back: the shortfall is the backlog.
            let scheduled = (start_wall.elapsed().as_secs_f64() * f64::from(cfg.events_per_second)) as u64;
            tx.backlog().set_behind_schedule(scheduled.saturating_sub(sent));
            if cfg.limit.is_some_and(|l| sent >= l) {
                let _ = tx.blocking_send(SourceMessage::End);
                return Ok(());
            }
            // The next batch is due `n` ticks after the start; a late one is sent at once.
            if let Some(wait) = (tick * n).checked_sub(start_wall.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    })
}
