//! The directory source: `<name>@<version>.wasm` files, scanned, watched with `notify`, and
//! published to atomically. Ownership lives in hidden sidecar files beside each module (the
//! scan skips hidden files as modules): `.<name>@<version>.owner` holds the owning tenant,
//! `.<name>@<version>.shared` exists when an admin shared the module. A module without an owner
//! file was placed by an operator and is shared.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Index, ModuleId, ModuleInfo, ModuleSource, check_publishable, module_path};
use crate::config::plugin_limits::MAX_MODULE_BYTES;
use crate::plugin::engine::sha256_hex;
use crate::plugin::error::PluginError;

/// Sidecar file recording the tenant that owns a module.
pub fn owner_path(dir: &Path, id: &ModuleId) -> PathBuf {
    dir.join(format!(".{id}.owner"))
}

/// Sidecar file marking a tenant's module shared with every tenant.
pub fn shared_path(dir: &Path, id: &ModuleId) -> PathBuf {
    dir.join(format!(".{id}.shared"))
}

/// The owner recorded for a module: `None` without an owner file (an operator's module). An
/// owner file that is unreadable or not a valid tenant id counts as owned by nobody that can
/// match (`"?"`): failing closed, never widening a module to every tenant.
fn read_owner(dir: &Path, id: &ModuleId) -> Option<String> {
    match std::fs::read_to_string(owner_path(dir, id)) {
        Ok(s) if crate::config::validate::is_valid_id(s.trim()) => Some(s.trim().to_string()),
        Ok(_) => Some("?".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some("?".into()),
    }
}

/// Indexes the modules in `dir`. Files whose size and modification time match `previous` keep
/// their sha256 without being read again. Other files (temporary, hidden, misnamed) are
/// skipped.
pub(super) fn scan(dir: &Path, previous: &Index) -> Result<Index, PluginError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PluginError::Registry(format!("reading plugin directory {}: {e}", dir.display())))?;
    let mut index = Index::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(id) = file_name.to_str().and_then(ModuleId::from_file_name) else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let (size, modified) = (meta.len(), meta.modified().ok());
        if size as usize > MAX_MODULE_BYTES {
            tracing::warn!(file = %path.display(), size, "plugin module too large; skipped");
            continue;
        }
        let source = ModuleSource::Dir(path.clone());
        let sha256 = match previous.get(&id) {
            Some(p) if p.size == size && p.modified == modified && p.source == source => p.sha256.clone(),
            _ => match std::fs::read(&path) {
                Ok(bytes) => sha256_hex(&bytes),
                // Removed or unreadable between listing and reading: the next event rescans.
                Err(e) => {
                    tracing::debug!(file = %path.display(), error = %e, "plugin module unreadable; skipped");
                    continue;
                }
            },
        };
        let owner = read_owner(dir, &id);
        let shared = shared_path(dir, &id).exists();
        index.insert(id.clone(), ModuleInfo { id, sha256, size, modified, source, owner, shared });
    }
    Ok(index)
}

/// Watches `dir` (not recursively); every event sends a unit on `tx`.
pub(super) fn watch(dir: &Path, tx: mpsc::UnboundedSender<()>) -> Result<notify::RecommendedWatcher, PluginError> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(_) => {
            let _ = tx.send(());
        }
        Err(e) => tracing::warn!(error = %e, "plugin directory watch error"),
    })
    .map_err(|e| PluginError::Registry(format!("watching {}: {e}", dir.display())))?;
    watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|e| PluginError::Registry(format!("watching {}: {e}", dir.display())))?;
    Ok(watcher)
}

/// Writes a module to `dir` as `<name>@<version>.wasm`, atomically (a hidden temporary file
/// renamed into place), so watchers never index a half-written module.
pub async fn publish_to_dir(dir: &Path, name: &str, version: &str, bytes: &[u8]) -> Result<ModuleInfo, PluginError> {
    let id = check_publishable(name, version, bytes)?;
    let path = module_path(dir, &id);
    let tmp: PathBuf = dir.join(format!(".{}.tmp-{}", id.file_name(), std::process::id()));
    let io_err = |what: &str, p: &Path, e: std::io::Error| PluginError::Registry(format!("{what} {}: {e}", p.display()));
    tokio::fs::write(&tmp, bytes).await.map_err(|e| io_err("writing", &tmp, e))?;
    if let Err(e) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_err("renaming into", &path, e));
    }
    let modified = tokio::fs::metadata(&path).await.ok().and_then(|m| m.modified().ok());
    tracing::info!(plugin = %id, file = %path.display(), "published plugin module");
    let (owner, shared) = (read_owner(dir, &id), shared_path(dir, &id).exists());
    Ok(ModuleInfo { id, sha256: sha256_hex(bytes), size: bytes.len() as u64, modified, source: ModuleSource::Dir(path), owner, shared })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publish_then_scan() {
        let dir = tempfile::tempdir().unwrap();
        let info = publish_to_dir(dir.path(), "demo", "1.0.0", b"module bytes").await.unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        std::fs::write(dir.path().join("Bad@1.wasm"), b"ignored").unwrap();
        let index = scan(dir.path(), &Index::new()).unwrap();
        assert_eq!(index.len(), 1);
        let found = &index[&info.id];
        assert_eq!(found.sha256, sha256_hex(b"module bytes"));
        assert_eq!(found.size, 12);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        assert!(publish_to_dir(dir.path(), "Demo", "1", b"x").await.is_err());
    }

    #[test]
    fn unchanged_files_keep_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a@1.wasm"), b"one").unwrap();
        let first = scan(dir.path(), &Index::new()).unwrap();
        let mut fake = first.clone();
        fake.values_mut().for_each(|m| m.sha256 = "remembered".into());
        // Same size and mtime: the remembered hash is reused, proving no re-read.
        assert_eq!(scan(dir.path(), &fake).unwrap().values().next().unwrap().sha256, "remembered");
    }

    #[test]
    fn sidecars_record_owner_and_shared_mark() {
        let dir = tempfile::tempdir().unwrap();
        for m in ["op@1.wasm", "own@1.wasm", "sh@1.wasm", "odd@1.wasm"] {
            std::fs::write(dir.path().join(m), b"m").unwrap();
        }
        let id = |n: &str| ModuleId::new(n, "1").unwrap();
        std::fs::write(owner_path(dir.path(), &id("own")), "acme\n").unwrap();
        std::fs::write(owner_path(dir.path(), &id("sh")), "acme").unwrap();
        std::fs::write(shared_path(dir.path(), &id("sh")), b"").unwrap();
        std::fs::write(owner_path(dir.path(), &id("odd")), "../not a tenant").unwrap();
        let index = scan(dir.path(), &Index::new()).unwrap();
        assert_eq!(index.len(), 4, "sidecars are not modules");
        let m = |n: &str| &index[&id(n)];
        assert!(m("op").owner.is_none() && m("op").is_shared() && m("op").usable_by("anyone"));
        assert_eq!(m("own").owner.as_deref(), Some("acme"));
        assert!(m("own").usable_by("acme") && !m("own").usable_by("rival") && !m("own").is_shared());
        assert!(m("sh").shared && m("sh").usable_by("rival"));
        assert!(!m("odd").usable_by("acme") && !m("odd").is_shared(), "a bad owner file fails closed");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = scan(Path::new("/definitely/not/here"), &Index::new()).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
    }
}
