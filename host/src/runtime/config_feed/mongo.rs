//! The MongoDB feed: one connection (retried while the server is down), a full read, then a
//! poll of changed documents on the `updated_at` index with a periodic full resync.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::ConfigFeed;
use crate::config::mongo::MongoScenarioStore;
use crate::runtime::shutdown::Shutdown;

/// How often MongoDB is asked for changed documents, and for all of them.
#[derive(Debug, Clone, Copy)]
pub struct PollIntervals {
    pub poll: Duration,
    pub resync: Duration,
}

/// The origin of a document is its `_id`, which stays when its fields are edited: a document
/// whose ids become unreadable still holds (and keeps) the scenario it held.
fn tagged(docs: Vec<(Value, String)>) -> Vec<(Value, String)> {
    docs.into_iter().map(|(d, id)| (d, format!("mongodb scenarios _id {id}"))).collect()
}

fn layers_tagged(docs: Vec<Value>) -> Vec<(Value, String)> {
    docs.into_iter()
        .map(|d| {
            let origin = format!("mongodb defaults {}", d.get("layer").and_then(Value::as_str).unwrap_or("?"));
            (d, origin)
        })
        .collect()
}

/// Connects to MongoDB, retrying with backoff while it is down; `None` when told to stop first.
/// The one client of a run: the config feed, the plugin registry and the admin API share it.
pub async fn connect_mongo(url: &str, database: &str, create_indexes: bool, shutdown: &mut Shutdown) -> Option<MongoScenarioStore> {
    let mut delay = Duration::from_millis(500);
    loop {
        match MongoScenarioStore::connect_with(url, database, create_indexes).await {
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
        match store.load_all_with_ids().await {
            Ok(d) => break d,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read scenarios; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(url = %store.url(), scenarios = docs.len(), "scenario documents loaded from MongoDB");
    let mut since = max_updated_at(docs.iter().map(|(d, _)| d)).unwrap_or(0);
    // Unreadable tenants: the defaults for now, the last valid quotas once they were read.
    let (tenants, incomplete) = match store.tenants().await {
        Ok(t) => (t, false),
        Err(_) => (Vec::new(), true),
    };
    tx.send(ConfigFeed::Tenants { docs: tenants, incomplete }).await?;
    // Defaults layers before the scenarios they resolve; an unreadable collection is retried
    // with the next resync (no layer is taken as deleted meanwhile).
    let mut layers_since = 0;
    if let Ok(layers) = store.layers().await {
        layers_since = max_updated_at(layers.iter()).unwrap_or(0);
        tx.send(ConfigFeed::Layers { docs: layers_tagged(layers), full: true }).await?;
    }
    tx.send(ConfigFeed::FullSet { docs: tagged(docs), unreadable: Vec::new() }).await?;
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
                Some(()) = nudges.recv() => store.load_all_with_ids().await.map(|d| (true, d)),
                _ = resync.tick() => store.load_all_with_ids().await.map(|d| (true, d)),
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
                    since = since.max(max_updated_at(docs.iter().map(|(d, _)| d)).unwrap_or(0));
                    // Tenant quotas are re-read with every full resync.
                    if full
                        && let Ok(t) = store.tenants().await
                        && tx.send(ConfigFeed::Tenants { docs: t, incomplete: false }).await.is_err()
                    {
                        break;
                    }
                    // Defaults layers: all of them with a resync, else the changed ones.
                    let layers = if full { store.layers().await } else { store.layers_changed_since(layers_since).await };
                    if let Ok(layers) = layers
                        && (full || !layers.is_empty())
                    {
                        layers_since = layers_since.max(max_updated_at(layers.iter()).unwrap_or(0));
                        if tx.send(ConfigFeed::Layers { docs: layers_tagged(layers), full }).await.is_err() {
                            break;
                        }
                    }
                    if full {
                        ConfigFeed::FullSet { docs: tagged(docs), unreadable: Vec::new() }
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

fn max_updated_at<'a>(docs: impl Iterator<Item = &'a Value>) -> Option<i64> {
    docs.filter_map(|d| d.get("updated_at")?.as_i64()).max()
}
