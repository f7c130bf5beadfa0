//! The embedded default config store: a local directory with one scenario document per
//! `*.json` file, watched with `notify` so an edit takes effect within about a second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use serde_json::Value;
use tokio::sync::mpsc;

/// The documents of a scenarios directory, and the files that could not be read as JSON.
#[derive(Debug, Default)]
pub struct DirDocuments {
    /// `(document, file path)`.
    pub docs: Vec<(Value, String)>,
    /// `(file path, why)`: the registry keeps the last valid config of a scenario whose file
    /// became unreadable, so an editor's half-written save never removes it.
    pub errors: Vec<(String, String)>,
}

/// Reads every `*.json` document of `dir`. Unreadable or non-JSON files are returned as errors
/// beside the good documents so one bad file never hides the others.
pub fn read_dir_documents(dir: &Path) -> anyhow::Result<DirDocuments> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read --scenarios-dir {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let origin = p.display().to_string();
        match std::fs::read(&p).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string())) {
            Ok(v) => docs.push((v, origin)),
            Err(e) => errors.push((origin, e)),
        }
    }
    Ok(DirDocuments { docs, errors })
}

/// The tenant documents (quotas) of `<dir>/tenants/*.json`; unreadable ones are logged and
/// skipped.
pub fn read_tenant_documents(dir: &Path) -> Vec<Value> {
    read_tenant_set(dir).0
}

/// Like [`read_tenant_documents`], and whether some tenant file could not be read (then the
/// set is incomplete and the runtime keeps the last valid quotas of the tenants missing).
pub fn read_tenant_set(dir: &Path) -> (Vec<Value>, bool) {
    let tenants = dir.join("tenants");
    if !tenants.is_dir() {
        return (Vec::new(), false);
    }
    match read_dir_documents(&tenants) {
        Ok(read) => {
            for (file, e) in &read.errors {
                tracing::error!(%file, error = %e, "tenant file is not a JSON document; tenants keep their last valid quotas");
            }
            let incomplete = !read.errors.is_empty();
            (read.docs.into_iter().map(|(v, _)| v).collect(), incomplete)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read tenant documents; tenants keep their last valid quotas");
            (Vec::new(), true)
        }
    }
}

/// Watches `dir` and sends `()` (debounced) whenever something in it changes; the receiver
/// re-reads the directory. The returned watcher must be kept alive.
pub fn watch_dir(dir: &Path, tx: mpsc::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = raw_tx.send(());
        }
    })
    .context("starting the file watcher")?;
    // Recursive: tenant documents live in `tenants/` (history writes in `.history/` trigger a
    // harmless re-read too).
    watcher.watch(dir, RecursiveMode::Recursive).with_context(|| format!("watching {}", dir.display()))?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Editors write in several steps: wait for the burst to end.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while raw_rx.try_recv().is_ok() {}
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok(watcher)
}
