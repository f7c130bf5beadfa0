//! Fan-out of emitted results, status and rejected events to the configured sinks.

use std::collections::HashMap;

use crate::config::ScenarioKey;
use crate::event::RecordBatch;
use crate::health::HealthReporter;
use crate::output::Output;
use crate::output::status::{PipelineStats, ScenarioStatusRow, TenantStatusRow};
use crate::pipeline::Reject;
use crate::settings::{DeadLetterSettings, OutputSettings, ViewMode};
use crate::sinks::dead_letter::DeadLetterSink;
use crate::sinks::jsonl::JsonlSink;
use crate::sinks::live::LiveView;
use crate::sinks::redis::RedisSink;
use crate::sinks::terminal::TerminalView;

/// Status hashes are rewritten when they change, and at least this often (ms) as a heartbeat.
const STATUS_REFRESH_MS: i64 = 10_000;

pub struct Outputs {
    jsonl: Option<JsonlSink>,
    redis: Option<RedisSink>,
    view: Option<TerminalView>,
    /// What the console and the API's status route show.
    live: Option<LiveView>,
    dead_letter: DeadLetterSink,
    /// Last written status per scenario, and when.
    status_written: HashMap<ScenarioKey, (ScenarioStatusRow, i64)>,
}

impl Outputs {
    /// Opens the sinks of `settings`; `jsonl` is the `--jsonl-out` file, opened once for every
    /// pipeline of the host ([`JsonlSink::create`]).
    pub async fn open(settings: &OutputSettings, health: &HealthReporter, jsonl: Option<JsonlSink>) -> anyhow::Result<Self> {
        let redis = match &settings.redis_url {
            #[cfg(feature = "redis")]
            Some(url) => {
                let ttl = crate::sinks::redis::RedisTtl::default().with_overrides(&settings.redis_ttl);
                // Results go out behind the pipeline (the runtime marks records processed once
                // Redis acknowledged their outputs: `written_through`, `settle`).
                Some(
                    RedisSink::connect(url, ttl)
                        .await?
                        .with_keys(settings.redis_keys.clone())
                        .with_reachability(health.sinks_ok_flag())
                        .with_background_writer(),
                )
            }
            #[cfg(not(feature = "redis"))]
            Some(url) => {
                let _ = health;
                anyhow::bail!("cannot write to Redis at {url}: this rtscore was built without the `redis` feature")
            }
            None => None,
        };
        let view = match settings.view {
            ViewMode::Off => None,
            ViewMode::Live => Some(TerminalView::new(true)),
            ViewMode::Log => Some(TerminalView::new(false)),
        };
        let dead_letter = match &settings.dead_letters {
            DeadLetterSettings::File(path) => DeadLetterSink::file(path)?,
            DeadLetterSettings::Kafka { brokers, topic, options, fallback } => DeadLetterSink::kafka(brokers, topic, options, fallback)?,
            DeadLetterSettings::Log => DeadLetterSink::log(),
        };
        Ok(Self { jsonl, redis, view, live: None, dead_letter, status_written: HashMap::new() })
    }

    /// The console's live view, when the host serves HTTP.
    pub fn live(&self) -> Option<&LiveView> {
        self.live.as_ref()
    }

    pub fn with_live(mut self, live: Option<LiveView>) -> Self {
        self.live = live;
        self
    }

    pub async fn write(&mut self, out: &[Output]) -> anyhow::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if let Some(r) = &mut self.redis {
            r.write(out).await?;
        }
        if let Some(j) = &mut self.jsonl {
            j.write(out)?;
        }
        if let Some(v) = &mut self.view {
            v.record(out);
        }
        if let Some(l) = &self.live {
            l.record(out);
        }
        Ok(())
    }

    /// A number for the outputs written so far: the outputs of every [`Self::write`] that
    /// returned are in every sink once [`Self::written_through`] reaches it.
    pub fn written(&self) -> u64 {
        self.redis.as_ref().map_or(0, RedisSink::queued)
    }

    /// How far the outputs are in every sink (see [`Self::written`]): JSON lines are written
    /// when `write` returns, Redis's when it acknowledged them.
    pub fn written_through(&self) -> u64 {
        self.redis.as_ref().map_or(0, RedisSink::acked)
    }

    /// Waits until every output written is in every sink.
    pub async fn settle(&mut self) -> anyhow::Result<()> {
        match &mut self.redis {
            Some(r) => r.settle().await,
            None => Ok(()),
        }
    }

    /// Completes when the sinks hold more of the outputs written (see [`Self::written_through`]);
    /// never, when every sink holds them as they are written. An error when the Redis writer
    /// stopped.
    pub async fn acked_changed(&mut self) -> anyhow::Result<()> {
        match &mut self.redis {
            Some(r) => r.acked_changed().await,
            None => std::future::pending().await,
        }
    }

    /// The Redis connection, when results go to Redis (snapshots share it).
    pub fn redis_mut(&mut self) -> Option<&mut RedisSink> {
        self.redis.as_mut()
    }

    pub fn dead_letters(&mut self, batch: &RecordBatch, rejects: &[Reject]) -> anyhow::Result<()> {
        for r in rejects {
            let raw = batch.get(r.index).unwrap_or_default();
            self.dead_letter.send(raw, &r.reason, batch.position(r.index), batch.source_position(r.index))?;
        }
        if !rejects.is_empty() {
            self.dead_letter.flush()?;
            if let Some(l) = &self.live {
                l.rejected(rejects.iter().map(|r| batch.get(r.index).unwrap_or_default()));
            }
        }
        Ok(())
    }

    /// Writes `rt:{t}:{s}:status` for scenarios whose status changed (or on the heartbeat).
    pub async fn status(&mut self, rows: &[ScenarioStatusRow]) -> anyhow::Result<()> {
        let Some(redis) = &mut self.redis else { return Ok(()) };
        let now = chrono::Utc::now().timestamp_millis();
        for row in rows {
            let key = row.key();
            let fresh = self.status_written.get(&key).is_some_and(|(r, at)| r == row && now - at < STATUS_REFRESH_MS);
            if !fresh {
                redis.write_status(&key, &row.redis_fields(now)).await?;
                self.status_written.insert(key, (row.clone(), now));
            }
        }
        Ok(())
    }

    pub fn tick(&mut self, stats: &PipelineStats, rows: &[ScenarioStatusRow], tenants: &[TenantStatusRow], input: Option<(u64, u64)>) {
        if let Some(l) = &self.live {
            l.status(stats, rows, tenants, chrono::Utc::now().timestamp_millis());
        }
        if let Some(v) = &mut self.view {
            let problems = rows.iter().filter_map(|r| Some((r.key(), r.last_error.clone()?))).collect();
            v.draw(stats, &problems, input);
        }
    }

    pub async fn close(&mut self) -> anyhow::Result<()> {
        self.dead_letter.close().await
    }
}
