//! Delivers scenario documents to the runtime: from a watched directory (the embedded default)
//! or from MongoDB, polled on the `updated_at` index (`--config-poll-ms`) with a periodic full
//! resync (`--config-resync-ms`) that also catches deletes and writes that skipped `updated_at`.

#[cfg(feature = "mongodb")]
mod mongo;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

#[cfg(feature = "mongodb")]
pub use mongo::{PollIntervals, connect_mongo, start_mongo};

use crate::config::registry::Unreadable;
use crate::config::{ConfigChange, ScenarioRegistry, dir_store};
use crate::pipeline::Pipeline;
use crate::text::cap_error;

/// What the feed hands the runtime (each pipeline of a host a copy).
#[derive(Debug, Clone)]
// Changes and outages come from MongoDB only; a directory is always read whole.
#[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
pub enum ConfigFeed {
    /// Every document there is: scenarios not among them are removed, unless their origin is
    /// among `unreadable` (then they keep their last valid config).
    FullSet { docs: Vec<(Value, String)>, unreadable: Vec<Unreadable> },
    /// Documents that changed.
    Changed(Vec<(Value, String)>),
    /// Every tenant document (quotas); sent before each full set. `incomplete`: some tenant
    /// document could not be read, so tenants missing keep their last valid quotas.
    Tenants { docs: Vec<Value>, incomplete: bool },
    /// Defaults layer documents (`config::layers`): every stored one (`full`, sent before each
    /// full set of scenarios) or those that changed.
    Layers { docs: Vec<(Value, String)>, full: bool },
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
                for (file, e) in &read.errors {
                    tracing::error!(%file, error = %e, "scenario file is not a JSON document; its scenario keeps the last valid config");
                }
                let unreadable = read.errors.into_iter().map(|(origin, error)| Unreadable { origin, error }).collect();
                ConfigFeed::FullSet { docs: read.docs, unreadable }
            }
            Err(e) => ConfigFeed::Unavailable(format!("{e:#}")),
        }
    };
    let first = read(&dir);
    if let ConfigFeed::Unavailable(e) = &first {
        anyhow::bail!("{e}");
    }
    let tenants = |dir: &PathBuf| {
        let (docs, incomplete) = dir_store::read_tenant_set(dir);
        ConfigFeed::Tenants { docs, incomplete }
    };
    tx.try_send(tenants(&dir)).map_err(|_| anyhow::anyhow!("config channel closed"))?;
    tx.try_send(dir_layers(&dir)).map_err(|_| anyhow::anyhow!("config channel closed"))?;
    tx.try_send(first).map_err(|_| anyhow::anyhow!("config channel closed"))?;
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(4);
    let watcher = dir_store::watch_dir(&dir, changed_tx)?;
    tokio::spawn(async move {
        while changed_rx.recv().await.is_some() {
            if tx.send(tenants(&dir)).await.is_err() || tx.send(dir_layers(&dir)).await.is_err() || tx.send(read(&dir)).await.is_err() {
                break;
            }
        }
    });
    Ok(watcher)
}

/// The directory's defaults layers: a full set, unless a layer file could not be read (then
/// no layer is taken as deleted).
fn dir_layers(dir: &std::path::Path) -> ConfigFeed {
    let (docs, complete) = crate::config::layer_store::read_dir_layers(dir);
    ConfigFeed::Layers { docs, full: complete }
}

/// Applies what the feed delivered to the registry and the pipeline; a store outage is kept in
/// `store_error` for `/status`.
pub fn apply(feed: ConfigFeed, registry: &mut ScenarioRegistry, pipeline: &mut Pipeline, store_error: &mut Option<String>) {
    let changes = match feed {
        ConfigFeed::FullSet { docs, unreadable } => registry.resync(&docs, &unreadable, chrono::Utc::now().timestamp_millis()),
        ConfigFeed::Changed(docs) => {
            docs.iter().map(|(d, origin)| registry.apply_document(d, origin, chrono::Utc::now().timestamp_millis())).collect()
        }
        ConfigFeed::Layers { docs, full } => {
            let update = registry.apply_layers(&docs, full, chrono::Utc::now().timestamp_millis());
            for r in &update.refused {
                metrics::counter!("rtscore_config_layer_rejected_total").increment(1);
                tracing::error!(origin = %r.origin, error = %cap_error(&r.error), "invalid defaults layer document; keeping its last valid version");
            }
            update.changes
        }
        ConfigFeed::Tenants { docs, incomplete } => {
            let (tenants, errors) = registry.tenants().updated(&docs, incomplete);
            for e in errors {
                tracing::error!(error = %cap_error(&e.to_string()), "invalid tenant document; that tenant keeps its last valid quotas");
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
                let why = registry.get(key).and_then(|e| e.removed.as_ref()).map(|r| r.reason.clone()).unwrap_or_default();
                tracing::warn!(scenario = %key, reason = %why, "scenario removed; its state is freed");
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
