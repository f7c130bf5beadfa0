//! Delivers scenario documents to the runtime: from a watched directory (the embedded default)
//! or from MongoDB, polled on the `updated_at` index (`--config-poll-ms`) with a periodic full
//! resync (`--config-resync-ms`) that also catches deletes and writes that skipped `updated_at`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use std::sync::Arc;

use super::shutdown::Shutdown;
use crate::config::mongo::MongoScenarioStore;
use crate::config::{ConfigChange, ScenarioRegistry, dir_store};
use crate::pipeline::Pipeline;
use crate::text::cap_error;

/// How often MongoDB is asked for changed documents, and for all of them.
#[derive(Debug, Clone, Copy)]
pub struct PollIntervals {
    pub poll: Duration,
    pub resync: Duration,
}

/// What the feed hands the runtime.
#[derive(Debug)]
pub enum ConfigFeed {
    /// Every document there is: scenarios not among them are removed.
    Snapshot(Vec<(Value, String)>),
    /// Documents that changed.
    Changed(Vec<(Value, String)>),
    /// Every tenant document (quotas); sent before each snapshot.
    Tenants(Vec<Value>),
    /// The store cannot be read; the runtime keeps its last valid configs.
    Unavailable(String),
    /// The store answers again after an outage.
    Recovered,
}

/// Reads the directory now, then re-reads it on every change. Keep the watcher alive.
pub fn start_dir(dir: PathBuf, tx: mpsc::Sender<ConfigFeed>) -> anyhow::Result<notify::RecommendedWatcher> {
    let read = move |dir: &PathBuf| -> ConfigFeed {
        match dir_store::read_dir_documents(dir) {
            Ok(read) => {
                for e in &read.errors {
                    tracing::error!(error = %e, "scenario file is not a JSON document; ignored");
                }
                ConfigFeed::Snapshot(read.docs)
            }
            Err(e) => ConfigFeed::Unavailable(format!("{e:#}")),
        }
    };
    let first = read(&dir);
    if let ConfigFeed::Unavailable(e) = &first {
        anyhow::bail!("{e}");
    }
    tx.try_send(ConfigFeed::Tenants(dir_store::read_tenant_documents(&dir))).map_err(|_| anyhow::anyhow!("config channel closed"))?;
    tx.try_send(first).map_err(|_| anyhow::anyhow!("config channel closed"))?;
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(4);
    let watcher = dir_store::watch_dir(&dir, changed_tx)?;
    tokio::spawn(async move {
        while changed_rx.recv().await.is_some() {
            if tx.send(ConfigFeed::Tenants(dir_store::read_tenant_documents(&dir))).await.is_err() || tx.send(read(&dir)).await.is_err() {
                break;
            }
        }
    });
    Ok(watcher)
}

fn origin_of(doc: &Value) -> String {
    format!("mongodb scenarios {}/{}", doc["tenant_id"].as_str().unwrap_or("?"), doc["scenario_id"].as_str().unwrap_or("?"))
}

fn tagged(docs: Vec<Value>) -> Vec<(Value, String)> {
    docs.into_iter()
        .map(|d| {
            let origin = origin_of(&d);
            (d, origin)
        })
        .collect()
}

/// Connects to MongoDB, retrying with backoff while it is down; `None` when told to stop first.
/// The one client of a run: the config feed, the plugin registry and the admin API share it.
pub async fn connect_mongo(url: &str, database: &str, shutdown: &mut Shutdown) -> Option<MongoScenarioStore> {
    let mut delay = Duration::from_millis(500);
    loop {
        match MongoScenarioStore::connect(url, database).await {
            Ok(s) => return Some(s),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), retry_in = ?delay, "cannot load scenario documents from MongoDB; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    () = shutdown.wait() => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Sends the tenants and the first full set of documents, then polls `store` until `stop`.
pub async fn start_mongo(
    store: MongoScenarioStore,
    intervals: PollIntervals,
    tx: mpsc::Sender<ConfigFeed>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let docs = loop {
        match store.load_all().await {
            Ok(d) => break d,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read scenarios; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(url = %store.url(), scenarios = docs.len(), "scenario documents loaded from MongoDB");
    let mut since = max_updated_at(&docs).unwrap_or(0);
    tx.send(ConfigFeed::Tenants(store.tenants().await.unwrap_or_default())).await?;
    tx.send(ConfigFeed::Snapshot(tagged(docs))).await?;
    // Change streams (a replica set) make a change visible at once; polling stays the safety net.
    let (nudge_tx, mut nudges) = mpsc::channel::<()>(16);
    match store.watch_changes(nudge_tx).await {
        Ok(_) => tracing::info!("watching scenario changes with a MongoDB change stream"),
        Err(e) => {
            tracing::info!(reason = %format!("{e:#}"), "no change streams on this server; polling scenarios every {:?}", intervals.poll)
        }
    }
    tokio::spawn(async move {
        let mut poll = tokio::time::interval(intervals.poll);
        let mut resync = tokio::time::interval(intervals.resync);
        resync.tick().await;
        let mut down = false;
        loop {
            let result = tokio::select! {
                _ = poll.tick() => store.changed_since(since).await.map(|d| (false, d)),
                // A change stream event: re-read everything (this also sees deletes).
                Some(()) = nudges.recv() => store.load_all().await.map(|d| (true, d)),
                _ = resync.tick() => store.load_all().await.map(|d| (true, d)),
                _ = shutdown.changed() => break,
            };
            let msg = match result {
                Ok((full, docs)) => {
                    if down {
                        down = false;
                        if tx.send(ConfigFeed::Recovered).await.is_err() {
                            break;
                        }
                    }
                    since = since.max(max_updated_at(&docs).unwrap_or(0));
                    // Tenant quotas are re-read with every full resync.
                    if full
                        && let Ok(t) = store.tenants().await
                        && tx.send(ConfigFeed::Tenants(t)).await.is_err()
                    {
                        break;
                    }
                    if full {
                        ConfigFeed::Snapshot(tagged(docs))
                    } else if docs.is_empty() {
                        continue;
                    } else {
                        ConfigFeed::Changed(tagged(docs))
                    }
                }
                Err(e) if !down => {
                    down = true;
                    ConfigFeed::Unavailable(format!("{e:#}"))
                }
                Err(_) => continue,
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn max_updated_at(docs: &[Value]) -> Option<i64> {
    docs.iter().filter_map(|d| d.get("updated_at")?.as_i64()).max()
}

/// Applies what the feed delivered to the registry and the pipeline; a store outage is kept in
/// `store_error` for `/status`.
pub fn apply(feed: ConfigFeed, registry: &mut ScenarioRegistry, pipeline: &mut Pipeline, store_error: &mut Option<String>) {
    let changes = match feed {
        ConfigFeed::Snapshot(docs) => registry.resync(&docs, chrono::Utc::now().timestamp_millis()),
        ConfigFeed::Changed(docs) => {
            docs.iter().map(|(d, origin)| registry.apply_document(d, origin, chrono::Utc::now().timestamp_millis())).collect()
        }
        ConfigFeed::Tenants(docs) => {
            let (tenants, errors) = crate::config::tenant::TenantTable::from_documents(&docs);
            for e in errors {
                tracing::error!(error = %cap_error(&e.to_string()), "invalid tenant document; that tenant keeps the default quotas");
            }
            registry.set_tenants(tenants);
            return;
        }
        ConfigFeed::Unavailable(e) => {
            tracing::error!(error = %e, "config store unavailable; running on the last valid configs");
            *store_error = Some(e);
            return;
        }
        ConfigFeed::Recovered => {
            tracing::info!("config store reachable again");
            *store_error = None;
            return;
        }
    };
    for c in &changes {
        match c {
            ConfigChange::Applied(cfg) => {
                let lag = registry.get(&cfg.key).and_then(|e| e.propagation_ms);
                if let Some(ms) = lag {
                    metrics::histogram!("rtscore_config_propagation_seconds").record(ms as f64 / 1000.0);
                }
                tracing::info!(scenario = %cfg.key, revision = cfg.revision, propagation_ms = lag, "config applied");
                pipeline.apply_config(&cfg.key, Some(Arc::clone(cfg)));
            }
            ConfigChange::Removed(key) => {
                tracing::info!(scenario = %key, "scenario removed; its state is freed");
                pipeline.apply_config(key, None);
            }
            ConfigChange::Rejected { key, error, origin } => {
                let scenario = key.as_ref().map(|k| k.to_string()).unwrap_or_default();
                // The error echoes the tenant's document: capped.
                tracing::error!(%scenario, %origin, error = %cap_error(&error.to_string()), "invalid scenario document; keeping the last valid config");
            }
            ConfigChange::Unchanged => {}
        }
    }
}
