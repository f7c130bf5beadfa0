//! Redis sink: the DESIGN §6 keys. Each scenario's hot list is replaced atomically (one
//! MULTI/EXEC with the meta hash), every output of a step goes out in one pipelined round trip,
//! and keys carry TTLs. Writes are idempotent: the same outputs leave the same values.
//!
//! With a background writer ([`RedisSink::with_background_writer`], the runtime's sink), a
//! write only encodes its commands and queues them: one task sends the queued pipelines in
//! order, retrying as a direct write does, so Redis works through them while the pipeline
//! thread computes the next records. The caller learns what is in Redis from
//! [`RedisSink::acked`] and waits for it with [`RedisSink::settle`] (before marking records
//! processed, before a snapshot, before reading profiles back).

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, watch};

use crate::config::ScenarioKey;
use crate::config::redis_keys::{self as keys, KeyLayout, TtlOverrides};
use crate::output::stored_profile::{profile_fields, profile_ttl_ms};
use crate::output::{EncodedProfile, MetricsWindow, Output, UserProfile};

/// Key lifetimes, so abandoned scenarios clean themselves up.
#[derive(Debug, Clone, Copy)]
pub struct RedisTtl {
    pub hot_ms: u64,
    /// `None`: a profile key lives as long as its scenario's interest decay says
    /// (`profile_ttl_ms`); `--redis-ttl profile=...` fixes it.
    pub profile: Option<std::time::Duration>,
    pub metrics_ms: u64,
    pub status_ms: u64,
}

impl Default for RedisTtl {
    fn default() -> Self {
        const DAY: u64 = 86_400_000;
        Self { hot_ms: 7 * DAY, profile: None, metrics_ms: 30 * DAY, status_ms: 7 * DAY }
    }
}

impl RedisTtl {
    /// The defaults with the host's `--redis-ttl` overrides applied.
    pub fn with_overrides(mut self, o: &TtlOverrides) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        for (slot, v) in [(&mut self.hot_ms, o.hot), (&mut self.status_ms, o.status), (&mut self.metrics_ms, o.metrics)] {
            if let Some(d) = v {
                *slot = ms(d);
            }
        }
        self.profile = o.profile.or(self.profile);
        self
    }
}

pub struct RedisSink {
    conn: ConnectionManager,
    ttl: RedisTtl,
    /// The key layout (`--redis-key-prefix`).
    keys: KeyLayout,
    url: String,
    /// Cleared while Redis is unreachable, so readiness reports the outage.
    reachable: Option<Arc<AtomicBool>>,
    /// Outages survived; Redis may have restarted empty in one (snapshots are stored again).
    outages: Arc<AtomicU64>,
    /// Queued writes, when they go out behind the caller.
    writer: Option<Writer>,
}

/// Pipelines queued for the background writer; beyond it a write waits (backpressure).
const QUEUED_WRITES: usize = 16;

/// The background writer: a queue of numbered pipelines and the number of the last one Redis
/// acknowledged.
struct Writer {
    queue: mpsc::Sender<(u64, redis::Pipeline)>,
    acked: watch::Receiver<u64>,
    /// Number of the last write queued.
    queued: u64,
    /// Why the writer stopped (a Redis error other than an outage).
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

impl RedisSink {
    pub async fn connect(url: &str, ttl: RedisTtl) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("invalid --redis-url {url}"))?;
        let conn = tokio::time::timeout(Duration::from_secs(10), ConnectionManager::new(client))
            .await
            .map_err(|_| anyhow::anyhow!("Redis at {url} did not answer within 10 s"))?
            .with_context(|| format!("cannot connect to Redis at {url}"))?;
        Ok(Self { conn, ttl, keys: KeyLayout::default(), url: url.to_string(), reachable: None, outages: Arc::default(), writer: None })
    }

    /// Writes go out behind the caller, in order, through one background task (see the module
    /// doc): [`Self::write`] returns once its commands are queued. Needs a Tokio runtime.
    pub fn with_background_writer(mut self) -> Self {
        let (queue, mut rx) = mpsc::channel::<(u64, redis::Pipeline)>(QUEUED_WRITES);
        let (acked_tx, acked) = watch::channel(0u64);
        let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let mut direct = self.background();
        direct.reachable = self.reachable.clone();
        let failure = failed.clone();
        tokio::spawn(async move {
            while let Some((n, pipe)) = rx.recv().await {
                if let Err(e) = direct.query::<()>(&pipe, "write results").await {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
                    return;
                }
                acked_tx.send_replace(n);
            }
        });
        self.writer = Some(Writer { queue, acked, queued: 0, failed });
        self
    }

    /// Number of the last write queued (0 before any, and always without a background writer).
    pub fn queued(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.queued)
    }

    /// Number of the last write Redis acknowledged: every write up to it is in Redis. Without a
    /// background writer every write is when it returns, so this equals [`Self::queued`].
    pub fn acked(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| *w.acked.borrow())
    }

    /// Completes when Redis acknowledged more writes ([`Self::acked`] moved); never without a
    /// background writer. An error when the writer stopped.
    pub async fn acked_changed(&mut self) -> anyhow::Result<()> {
        match self.writer.as_mut() {
            Some(w) => match w.acked.changed().await {
                Ok(()) => Ok(()),
                Err(_) => Err(w.failure()),
            },
            None => std::future::pending().await,
        }
    }

    /// Waits until every queued write is in Redis (outages are retried as always), or returns
    /// the error that stopped the writer.
    pub async fn settle(&mut self) -> anyhow::Result<()> {
        let Some(w) = self.writer.as_mut() else { return Ok(()) };
        let target = w.queued;
        if w.acked.wait_for(|&n| n >= target).await.is_err() {
            return Err(w.failure());
        }
        Ok(())
    }

    /// Writes under `keys` instead of the default `rt:` layout.
    pub fn with_keys(mut self, keys: KeyLayout) -> Self {
        self.keys = keys;
        self
    }

    /// Reports reachability through `flag` (readiness).
    pub fn with_reachability(mut self, flag: Arc<AtomicBool>) -> Self {
        self.reachable = Some(flag);
        self
    }

    /// The hashes at `keys` in one round trip (profiles read back, DESIGN §4), an empty map for
    /// a missing key. One attempt: the caller bounds the wait and decides what a failure means.
    /// A key that is not a hash reads as empty (logged), so one bad key fails no other.
    pub async fn read_hashes(&self, keys: &[String]) -> anyhow::Result<Vec<std::collections::HashMap<String, String>>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for k in keys {
            pipe.hgetall(k);
        }
        // The multiplexed connection orders these reads after the writes already sent.
        let mut conn = self.conn.clone();
        let results: Vec<redis::RedisResult<std::collections::HashMap<String, String>>> =
            pipe.query_async(&mut conn).await.context("Redis read of profiles")?;
        Ok(results
            .into_iter()
            .zip(keys)
            .map(|(r, key)| {
                r.unwrap_or_else(|e| {
                    tracing::warn!(key = %key, error = %e, "profile key is not readable as a hash; the user starts empty");
                    Default::default()
                })
            })
            .collect())
    }

    /// How many times Redis was unreachable and came back (the background writer's outages
    /// included).
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// A second handle on the same connection for work off the runtime's loop (snapshots):
    /// its own retries, no reachability reporting, writes awaited. Its outages count as this
    /// sink's.
    pub fn background(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            ttl: self.ttl,
            keys: self.keys.clone(),
            url: self.url.clone(),
            reachable: None,
            outages: self.outages.clone(),
            writer: None,
        }
    }

    fn set_reachable(&self, ok: bool) {
        if let Some(f) = &self.reachable {
            f.store(ok, Ordering::Relaxed);
        }
    }

    fn add_hot(&self, pipe: &mut redis::Pipeline, h: &crate::output::HotList, now_ms: i64) {
        self.add_list(pipe, h, &self.keys.hot(&h.key), &[], now_ms);
    }

    /// A shadow candidate's list goes to `hot:shadow` (+ `hot:shadow:meta` with the comparison),
    /// never to the served `hot` key.
    fn add_shadow(&self, pipe: &mut redis::Pipeline, s: &crate::output::ShadowList, now_ms: i64) {
        let c = &s.comparison;
        let extra = [
            ("k", c.k.to_string()),
            ("overlap_at_k", c.overlap_at_k.to_string()),
            ("rbo", c.rbo.to_string()),
            ("drift_p50", c.drift_p50.to_string()),
            ("drift_p90", c.drift_p90.to_string()),
            ("drift_max", c.drift_max.to_string()),
        ];
        self.add_list(pipe, &s.list, &self.keys.hot_shadow(&s.list.key), &extra, now_ms);
    }

    /// Replaces a hot-list ZSET and its `:meta` hash atomically.
    fn add_list(&self, pipe: &mut redis::Pipeline, h: &crate::output::HotList, hot: &str, extra: &[(&str, String)], now_ms: i64) {
        let meta = keys::meta(hot);
        pipe.cmd("MULTI").ignore();
        pipe.del(hot).ignore();
        if !h.items.is_empty() {
            let members: Vec<(f64, &str)> = h.items.iter().map(|i| (i.score, i.item_id.as_str())).collect();
            pipe.zadd_multiple(hot, &members).ignore();
            pipe.pexpire(hot, self.ttl.hot_ms as i64).ignore();
        }
        pipe.del(&meta).ignore();
        let mut fields = vec![
            ("window_start", h.window_start.to_string()),
            ("window_end", h.window_end.to_string()),
            ("config_revision", h.config_revision.to_string()),
            ("plugin", h.plugin.clone().unwrap_or_default()),
            ("item_count", h.items.len().to_string()),
            ("computed_at", now_ms.to_string()),
        ];
        fields.extend(extra.iter().cloned());
        pipe.hset_multiple(&meta, &fields).ignore();
        pipe.pexpire(&meta, self.ttl.hot_ms as i64).ignore();
        pipe.cmd("EXEC").ignore();
    }

    fn add_profile(&self, pipe: &mut redis::Pipeline, p: &UserProfile) {
        let key = self.keys.profile(&p.key, &p.user_id);
        pipe.del(&key).ignore();
        pipe.hset_multiple(&key, &profile_fields(p)).ignore();
        // The key outlives its last write by a few half-lives of the scenario's decay
        // (DESIGN §4, "Durable profiles"), so a returning user's history is read back.
        pipe.pexpire(&key, profile_ttl_ms(p.interest_decay_days, self.ttl.profile).min(i64::MAX as u64) as i64).ignore();
    }

    /// [`Self::add_profile`] for a profile encoded by the job: the same commands and bytes,
    /// each command built at its final size (one allocation, no regrowth).
    fn add_encoded_profile(&self, pipe: &mut redis::Pipeline, p: &EncodedProfile) {
        let key = self.keys.profile(&p.key, p.user_id());
        let fields = p.redis_fields();
        let mut del = redis::Cmd::with_capacity(2, 3 + key.len());
        del.arg("DEL").arg(&key);
        pipe.add_command(del).ignore();
        let bytes: usize = fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        let mut hset = redis::Cmd::with_capacity(2 + 2 * fields.len(), 5 + key.len() + bytes);
        hset.arg("HMSET").arg(&key);
        for (f, v) in fields {
            hset.arg(f).arg(v);
        }
        pipe.add_command(hset).ignore();
        let ttl = profile_ttl_ms(p.interest_decay_days, self.ttl.profile).min(i64::MAX as u64) as i64;
        let mut pexpire = redis::Cmd::with_capacity(3, 7 + key.len() + 20);
        pexpire.arg("PEXPIRE").arg(&key).arg(ttl);
        pipe.add_command(pexpire).ignore();
    }

    fn add_metrics(&self, pipe: &mut redis::Pipeline, m: &MetricsWindow) {
        let key = self.keys.metrics(&m.key, m.window_start);
        let mut fields: Vec<(String, String)> = vec![
            ("window_start".into(), m.window_start.to_string()),
            ("window_end".into(), m.window_end.to_string()),
            ("config_revision".into(), m.config_revision.to_string()),
            ("counts".into(), serde_json::to_string(&m.counts).unwrap_or_default()),
        ];
        fields.extend(m.counts.iter().map(|(a, n)| (format!("count:{a}"), n.to_string())));
        let opt = |v: Option<f64>| v.map_or_else(|| "null".to_string(), |x| x.to_string());
        if let Some(ctr) = m.ctr {
            fields.push(("ctr".into(), opt(ctr)));
        }
        if let Some(cvr) = m.cvr {
            fields.push(("cvr".into(), opt(cvr)));
        }
        if let Some(w) = m.watch_time {
            fields.push(("watch_time_mean_ms".into(), opt(w.mean_ms)));
            fields.push(("watch_time_total_ms".into(), w.total_ms.to_string()));
        }
        // Per item: one JSON value per item in a hash beside the window's (DESIGN §6), so a
        // reader fetches one item with HGET; replaced whole like the window's hash.
        let items_key = keys::metrics_items(&key);
        pipe.del(&items_key).ignore();
        if let Some(items) = &m.items {
            fields.push(("item_count".into(), items.top.len().to_string()));
            fields.push(("items_untracked_events".into(), items.untracked_events.to_string()));
            let per_item: Vec<(&str, String)> =
                items.top.iter().map(|i| (i.item_id.as_str(), serde_json::to_string(i).unwrap_or_default())).collect();
            if !per_item.is_empty() {
                pipe.hset_multiple(&items_key, &per_item).ignore();
                pipe.pexpire(&items_key, self.ttl.metrics_ms as i64).ignore();
            }
        }
        // A metrics plugin's values: scenario-level ones as `plugin:<name>` fields, per-item
        // ones as one JSON object `{name: value}` per item in a hash of their own; a shadow
        // candidate's the same way under `shadow`.
        let ttl = self.ttl.metrics_ms as i64;
        plugin_metrics_fields(pipe, &mut fields, "plugin", m.plugin.as_ref(), &keys::metrics_plugin_items(&key), ttl);
        plugin_metrics_fields(pipe, &mut fields, "shadow", m.shadow.as_ref(), &keys::metrics_shadow_items(&key), ttl);
        pipe.del(&key).ignore();
        pipe.hset_multiple(&key, &fields).ignore();
        pipe.pexpire(&key, self.ttl.metrics_ms as i64).ignore();
    }

    /// Writes one step's outputs. Transient failures are retried with backoff until they
    /// succeed: the caller waits (backpressure) rather than dropping results. With a background
    /// writer the commands are queued (the caller waits only while the queue is full) and go
    /// out in order; [`Self::acked`] tells when they are in Redis.
    pub async fn write(&mut self, outputs: &[Output]) -> anyhow::Result<()> {
        if outputs.is_empty() {
            return Ok(());
        }
        let pipe = self.pipeline(outputs);
        match self.writer.as_mut() {
            Some(w) => {
                if let Some(why) = w.failed() {
                    anyhow::bail!("{why}");
                }
                w.queued += 1;
                if w.queue.send((w.queued, pipe)).await.is_err() {
                    return Err(w.failure());
                }
                Ok(())
            }
            None => self.query(&pipe, "write results").await,
        }
    }

    /// The commands of one step's outputs, in one pipeline.
    fn pipeline(&self, outputs: &[Output]) -> redis::Pipeline {
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Three commands a profile, most outputs' count.
        let mut pipe = redis::Pipeline::with_capacity(3 * outputs.len());
        for o in outputs {
            match o {
                Output::Hot(h) => self.add_hot(&mut pipe, h, now_ms),
                Output::Shadow(sh) => self.add_shadow(&mut pipe, sh, now_ms),
                Output::ShadowEnded { key, .. } => {
                    let shadow = self.keys.hot_shadow(key);
                    pipe.del(&[keys::meta(&shadow), shadow]).ignore();
                }
                Output::Profile(p) => self.add_profile(&mut pipe, p),
                Output::EncodedProfile(p) => self.add_encoded_profile(&mut pipe, p),
                Output::Metrics(m) => self.add_metrics(&mut pipe, m),
            }
        }
        pipe
    }

    /// Replaces a scenario's status hash.
    pub async fn write_status(&mut self, key: &ScenarioKey, fields: &[(&str, String)]) -> anyhow::Result<()> {
        let k = self.keys.status(key);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&k).ignore().hset_multiple(&k, fields).ignore().pexpire(&k, self.ttl.status_ms as i64).ignore();
        self.query(&pipe, "write status").await
    }

    /// Runs `pipe`, retrying transient failures with backoff until Redis answers (the caller
    /// waits: backpressure). Other Redis errors are returned.
    pub async fn query<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline, what: &str) -> anyhow::Result<T> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            match pipe.query_async::<T>(&mut self.conn).await {
                Ok(v) => {
                    if attempt > 0 {
                        tracing::info!(url = %self.url, attempts = attempt + 1, "Redis is back");
                        self.set_reachable(true);
                        self.outages.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(e) if is_transient(&e) => {
                    attempt += 1;
                    self.set_reachable(false);
                    metrics::counter!("rtscore_redis_retries_total").increment(1);
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(url = %self.url, error = %e, attempt, "Redis unavailable; retrying ({what})");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("Redis refused to {what}"))),
            }
        }
    }
}

impl Writer {
    fn failed(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The error the writer stopped with.
    fn failure(&self) -> anyhow::Error {
        anyhow::anyhow!(self.failed().unwrap_or_else(|| "the Redis writer stopped".into()))
    }
}

fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Every status hash (`rt:{tenant}:{scenario}:status`, DESIGN §6, under `layout`'s prefix) the
/// hosts wrote to Redis at `url`, by key in key order; only `tenant`'s with `Some` (`rtscore status`).
pub async fn read_statuses(
    url: &str,
    layout: &KeyLayout,
    tenant: Option<&str>,
) -> anyhow::Result<Vec<(String, std::collections::BTreeMap<String, String>)>> {
    use redis::AsyncCommands;

    let client = redis::Client::open(url).with_context(|| format!("invalid --redis-url {url}"))?;
    let mut conn = client.get_multiplexed_async_connection().await.with_context(|| format!("cannot connect to Redis at {url}"))?;
    // A one-off read, not the event path: wait for a busy server (the client's default gives
    // up after 500 ms) and scan in large steps, since status keys are few among many.
    conn.set_response_timeout(std::time::Duration::from_secs(10));
    let options = redis::ScanOptions::default().with_pattern(layout.status_pattern(tenant)).with_count(1000);
    let mut names: Vec<String> = {
        let mut iter = conn.scan_options::<String>(options).await?;
        let mut names = Vec::new();
        while let Some(k) = futures::StreamExt::next(&mut iter).await {
            names.push(k?);
        }
        names
    };
    names.sort();
    let mut statuses = Vec::with_capacity(names.len());
    for key in names {
        let hash = conn.hgetall(&key).await?;
        statuses.push((key, hash));
    }
    Ok(statuses)
}

/// Adds a metrics plugin's values to a window's hash fields (`<prefix>` = its label,
/// `<prefix>:<name>` per scenario metric) and replaces its per-item hash `items_key`.
fn plugin_metrics_fields(
    pipe: &mut redis::Pipeline,
    fields: &mut Vec<(String, String)>,
    prefix: &str,
    plugin: Option<&crate::output::PluginMetrics>,
    items_key: &str,
    ttl_ms: i64,
) {
    pipe.del(items_key).ignore();
    let Some(p) = plugin else { return };
    fields.push((prefix.into(), p.plugin.clone()));
    let mut per_item: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for metric in &p.metrics {
        match &metric.item_id {
            None => fields.push((format!("{prefix}:{}", metric.name), metric.value.to_string())),
            Some(item) => {
                per_item.entry(item).or_default().insert(metric.name.clone(), metric.value.into());
            }
        }
    }
    let per_item: Vec<(&str, String)> =
        per_item.into_iter().map(|(item, values)| (item, serde_json::Value::Object(values).to_string())).collect();
    if !per_item.is_empty() {
        pipe.hset_multiple(items_key, &per_item).ignore();
        pipe.pexpire(items_key, ttl_ms).ignore();
    }
}
