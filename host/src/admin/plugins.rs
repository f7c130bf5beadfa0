//! Publishing and listing plugin modules: a module is checked against the quota, compiled in
//! the sandbox (a module no host could load is refused before any host sees it), then written
//! to the plugins directory or the fleet's MongoDB with its sha256. Modules published for a
//! tenant record that tenant as their owner; only the owner (or an admin) sees or replaces them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bson::{Document, doc};
use futures::TryStreamExt;
use serde::Serialize;

use super::AdminError;
use crate::plugin::registry::{MAX_MODULE_BYTES, list_dir_modules, list_mongo_modules};
use crate::plugin::{Grants, ModuleId, ModuleInfo, PluginEngine, PluginError, SandboxLimits, publish_to_dir, publish_to_mongo};

/// Limits on what one tenant may publish.
#[derive(Debug, Clone, Copy)]
pub struct PluginQuota {
    pub max_module_bytes: usize,
    /// Modules one owner may have published; `None` for no limit.
    pub max_modules_per_tenant: Option<usize>,
}

impl PluginQuota {
    /// What the CLI allows: any module a host would index.
    pub const OPERATOR: PluginQuota = PluginQuota { max_module_bytes: MAX_MODULE_BYTES, max_modules_per_tenant: None };
    /// What a tenant may upload through the admin API.
    pub const TENANT: PluginQuota = PluginQuota { max_module_bytes: 16 << 20, max_modules_per_tenant: Some(64) };
}

/// Where modules are published.
#[derive(Clone)]
pub enum PluginTarget {
    Dir(PathBuf),
    Mongo(mongodb::Collection<Document>),
}

/// One published module and who owns it (`None`: published by an operator, shared).
#[derive(Debug, Clone, Serialize)]
pub struct PublishedModule {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub owner: Option<String>,
}

impl PublishedModule {
    fn of(info: ModuleInfo, owner: Option<String>) -> Self {
        Self { name: info.id.name, version: info.id.version, sha256: info.sha256, size: info.size, owner }
    }

    /// The `hot_score.plugin` reference that pins this module.
    pub fn reference(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "version": self.version, "sha256": self.sha256, "params": {}})
    }
}

pub struct PluginService {
    target: PluginTarget,
    /// Made on the first publish: most hosts never compile an upload.
    engine: std::sync::OnceLock<Arc<PluginEngine>>,
}

/// Sidecar file recording the owner of a module in a plugins directory (hidden, so the
/// registry's scan skips it).
fn owner_file(dir: &Path, id: &ModuleId) -> PathBuf {
    dir.join(format!(".{id}.owner"))
}

impl PluginService {
    pub fn new(target: PluginTarget) -> Self {
        Self { target, engine: std::sync::OnceLock::new() }
    }

    fn engine(&self) -> Result<Arc<PluginEngine>, AdminError> {
        if let Some(e) = self.engine.get() {
            return Ok(Arc::clone(e));
        }
        let engine = Arc::new(PluginEngine::new(SandboxLimits::default(), Grants::default()).context("creating the plugin engine")?);
        Ok(Arc::clone(self.engine.get_or_init(|| engine)))
    }

    pub fn describe(&self) -> String {
        match &self.target {
            PluginTarget::Dir(d) => d.display().to_string(),
            PluginTarget::Mongo(_) => "MongoDB".to_string(),
        }
    }

    /// Every published module, or those `owner` published.
    pub async fn list(&self, owner: Option<&str>) -> Result<Vec<PublishedModule>, AdminError> {
        let mut all = match &self.target {
            PluginTarget::Dir(dir) => {
                let dir = dir.clone();
                let infos = tokio::task::spawn_blocking(move || {
                    list_dir_modules(&dir)
                        .map(|m| m.into_iter().map(|i| (std::fs::read_to_string(owner_file(&dir, &i.id)).ok(), i)).collect())
                })
                .await
                .context("listing plugins")?;
                let infos: Vec<(Option<String>, ModuleInfo)> = infos.map_err(registry_err)?;
                infos.into_iter().map(|(o, i)| PublishedModule::of(i, o.map(|o| o.trim().to_string()))).collect::<Vec<_>>()
            }
            PluginTarget::Mongo(coll) => {
                let infos = list_mongo_modules(coll).await.map_err(registry_err)?;
                let mut owners = std::collections::HashMap::new();
                let mut cursor =
                    coll.find(doc! {}).projection(doc! {"name": 1, "version": 1, "owner": 1}).await.context("listing plugin owners")?;
                while let Some(d) = cursor.try_next().await.context("listing plugin owners")? {
                    if let (Ok(n), Ok(v), Ok(o)) = (d.get_str("name"), d.get_str("version"), d.get_str("owner")) {
                        owners.insert((n.to_string(), v.to_string()), o.to_string());
                    }
                }
                infos
                    .into_iter()
                    .map(|i| {
                        let o = owners.remove(&(i.id.name.clone(), i.id.version.clone()));
                        PublishedModule::of(i, o)
                    })
                    .collect()
            }
        };
        all.retain(|m| owner.is_none_or(|o| m.owner.as_deref() == Some(o)));
        all.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(all)
    }

    /// Checks `bytes` against `quota`, compiles them in the sandbox and publishes them as
    /// `name@version`, owned by `owner` (`None`: an operator publishing a shared module).
    /// Replacing a module another owner published is refused.
    pub async fn publish(
        &self,
        owner: Option<&str>,
        name: &str,
        version: &str,
        bytes: Vec<u8>,
        quota: PluginQuota,
    ) -> Result<PublishedModule, AdminError> {
        let id = ModuleId::new(name, version).map_err(|e| match e {
            PluginError::InvalidName { field, rule, .. } => AdminError::rejected(field, format!("must match {rule}")),
            other => AdminError::rejected("name", other.to_string()),
        })?;
        if bytes.len() > quota.max_module_bytes {
            return Err(AdminError::Quota(format!(
                "{id} is {} bytes, above the {}-byte limit per module",
                bytes.len(),
                quota.max_module_bytes
            )));
        }
        let existing = self.list(None).await?;
        if let Some(m) = existing.iter().find(|m| m.name == id.name && m.version == id.version) {
            if owner.is_some() && m.owner.as_deref() != owner {
                return Err(AdminError::NotOwner(format!("plugin {id} was published by someone else; pick another name or version")));
            }
            // A published version never changes: scenarios that reference it without a hash,
            // and hosts that cached it, must keep getting the same module.
            if m.sha256 != crate::plugin::sha256_hex(&bytes) {
                return Err(AdminError::Conflict(format!(
                    "plugin {id} is published already with other bytes (sha256 {}); publish a new version",
                    m.sha256
                )));
            }
            return Ok(m.clone());
        }
        if let (Some(o), Some(max)) = (owner, quota.max_modules_per_tenant) {
            let owned =
                existing.iter().filter(|m| m.owner.as_deref() == Some(o) && !(m.name == id.name && m.version == id.version)).count();
            if owned >= max {
                return Err(AdminError::Quota(format!("tenant {o} already has {owned} modules, the limit is {max}")));
            }
        }
        // Refuse what a host could not load, before any host sees it.
        let engine = self.engine()?;
        let bytes = tokio::task::spawn_blocking(move || {
            let r = engine.compile(&bytes).map(|_| ());
            engine.purge_unused();
            r.map(|()| bytes)
        })
        .await
        .context("compiling the module")?
        .map_err(|e| AdminError::rejected("module", format!("must be a loadable rtscore:scoring component ({e})")))?;
        let info = match &self.target {
            PluginTarget::Dir(dir) => {
                tokio::fs::create_dir_all(dir).await.with_context(|| format!("creating {}", dir.display()))?;
                // The owner is recorded first, so a listing never shows the module unowned.
                let sidecar = owner_file(dir, &id);
                match owner {
                    Some(o) => tokio::fs::write(&sidecar, o).await.with_context(|| format!("writing {}", sidecar.display()))?,
                    None => {
                        let _ = tokio::fs::remove_file(&sidecar).await;
                    }
                }
                publish_to_dir(dir, name, version, &bytes).await.map_err(registry_err)?
            }
            PluginTarget::Mongo(coll) => {
                let info = publish_to_mongo(coll, name, version, &bytes).await.map_err(registry_err)?;
                let set = match owner {
                    Some(o) => doc! {"$set": {"owner": o}},
                    None => doc! {"$unset": {"owner": ""}},
                };
                coll.update_one(doc! {"name": &id.name, "version": &id.version}, set).await.context("recording the plugin owner")?;
                info
            }
        };
        Ok(PublishedModule::of(info, owner.map(str::to_string)))
    }
}

fn registry_err(e: PluginError) -> AdminError {
    AdminError::Store(anyhow::Error::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn quota_names_and_loadability_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let svc = PluginService::new(PluginTarget::Dir(dir.path().to_path_buf()));
        let small = PluginQuota { max_module_bytes: 8, max_modules_per_tenant: Some(1) };
        assert!(matches!(svc.publish(Some("t"), "demo", "1", vec![0; 9], small).await, Err(AdminError::Quota(_))));
        let err = svc.publish(Some("t"), "Demo", "1", vec![0; 4], small).await.unwrap_err();
        assert_eq!(err.field_errors()[0].path, "name");
        let err = svc.publish(Some("t"), "demo", "1", b"\0asm junk".to_vec(), PluginQuota::TENANT).await.unwrap_err();
        assert_eq!(err.field_errors()[0].path, "module");
        assert!(svc.list(None).await.unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_published_version_never_changes() {
        let dir = tempfile::tempdir().unwrap();
        let svc = PluginService::new(PluginTarget::Dir(dir.path().to_path_buf()));
        // Stored as if published before: the service compares hashes before compiling.
        publish_to_dir(dir.path(), "demo", "1.0.0", b"first bytes").await.unwrap();
        let err = svc.publish(None, "demo", "1.0.0", b"other bytes".to_vec(), PluginQuota::OPERATOR).await.unwrap_err();
        assert!(matches!(&err, AdminError::Conflict(m) if m.contains("publish a new version")), "{err}");
        let same = svc.publish(None, "demo", "1.0.0", b"first bytes".to_vec(), PluginQuota::OPERATOR).await.unwrap();
        assert_eq!(same.sha256, crate::plugin::sha256_hex(b"first bytes"), "the same bytes again: nothing changes");
    }
}
