//! Publishing and listing plugin modules: a module is checked against the quota, compiled in
//! the sandbox (a module no host could load is refused before any host sees it), then written
//! to the plugins directory or the fleet's MongoDB with its sha256. Modules published for a
//! tenant record that tenant as their owner; only the owner (or an admin) sees or replaces them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bson::{Document, doc};
use futures::TryStreamExt;
use serde::Serialize;

use super::AdminError;
use super::limits::{CompileSlots, FailedCompiles, UploadRate, cap_error};
use crate::config::tenant::TenantQuotas;
use crate::plugin::registry::{MAX_MODULE_BYTES, list_dir_modules, list_mongo_modules};
use crate::plugin::{Grants, ModuleId, ModuleInfo, PluginEngine, PluginError, SandboxLimits, publish_to_dir, publish_to_mongo};

/// Limits on what one tenant may publish.
#[derive(Debug, Clone, Copy)]
pub struct PluginQuota {
    pub max_module_bytes: usize,
    /// Modules one owner may have published; `None` for no limit.
    pub max_modules_per_tenant: Option<usize>,
    /// Uploads one owner may make per sliding minute; `None` for no limit. Checked by
    /// [`PluginService::admit_upload`], before the upload's body is read.
    pub uploads_per_minute: Option<u32>,
    /// Compiles of one owner running at once; `None` for no limit.
    pub concurrent_compiles: Option<usize>,
}

impl PluginQuota {
    /// What the CLI allows: any module a host would index.
    pub const OPERATOR: PluginQuota = PluginQuota {
        max_module_bytes: MAX_MODULE_BYTES,
        max_modules_per_tenant: None,
        uploads_per_minute: None,
        concurrent_compiles: None,
    };
    /// What a tenant without a tenant document may upload through the admin API.
    pub const TENANT: PluginQuota = PluginQuota {
        max_module_bytes: 16 << 20,
        max_modules_per_tenant: Some(64),
        uploads_per_minute: Some(10),
        concurrent_compiles: Some(1),
    };

    /// What a tenant with these quotas (its tenant document) may upload.
    pub fn for_tenant(q: &TenantQuotas) -> Self {
        PluginQuota {
            max_module_bytes: q.max_module_bytes,
            uploads_per_minute: Some(q.plugin_uploads_per_minute),
            concurrent_compiles: Some(q.concurrent_compiles),
            ..Self::TENANT
        }
    }
}

/// Host-wide limits on compiling uploaded modules (`rtscore run` flags).
#[derive(Debug, Clone, Copy)]
pub struct CompileLimits {
    /// A module whose compile takes longer is refused (`--plugin-compile-timeout-s`).
    pub timeout: Duration,
    /// How many failed modules (by sha256) are remembered and refused without compiling
    /// (`--failed-compile-cache`).
    pub failed_cache_entries: usize,
    /// Tenant uploads compiling at once on the host, whoever uploads them
    /// (`--plugin-max-compiles`): each tenant's own quota alone would let many tenants take
    /// every core.
    pub max_compiles: usize,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(60), failed_cache_entries: 256, max_compiles: 2 }
    }
}

/// The key of the host-wide compile slots (no tenant id contains `*`).
const ALL_TENANTS: &str = "*";

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
    limits: CompileLimits,
    rate: UploadRate,
    slots: CompileSlots,
    failed: FailedCompiles,
    /// Compiles started, for the `rtscore_plugin_compiles_total` metric and the tests.
    compiles: AtomicU64,
}

/// Why a bounded compile did not produce a module.
#[derive(Debug, PartialEq)]
enum CompileFailure {
    /// The bytes are not a loadable component: the engine's error.
    Invalid(String),
    TimedOut(Duration),
}

/// Runs `compile` on the blocking pool, off the async workers, and stops waiting after
/// `timeout`. A compile cannot be interrupted: past the timeout it finishes in the background,
/// still holding whatever `compile` owns (the tenant's compile slot), so a tenant cannot pile
/// up runaway compiles by retrying.
async fn compile_bounded<T: Send + 'static>(
    timeout: Duration,
    compile: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<Result<T, CompileFailure>, tokio::task::JoinError> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(compile)).await {
        Ok(joined) => joined.map(|r| r.map_err(CompileFailure::Invalid)),
        Err(_) => Ok(Err(CompileFailure::TimedOut(timeout))),
    }
}

fn count_refused(owner: &str, reason: &'static str) {
    metrics::counter!("rtscore_plugin_upload_refused_total", "tenant" => owner.to_string(), "reason" => reason).increment(1);
}

/// Sidecar file recording the owner of a module in a plugins directory (hidden, so the
/// registry's scan skips it).
fn owner_file(dir: &Path, id: &ModuleId) -> PathBuf {
    dir.join(format!(".{id}.owner"))
}

impl PluginService {
    pub fn new(target: PluginTarget) -> Self {
        Self::with_limits(target, CompileLimits::default())
    }

    pub fn with_limits(target: PluginTarget, limits: CompileLimits) -> Self {
        Self {
            target,
            engine: std::sync::OnceLock::new(),
            limits,
            rate: UploadRate::default(),
            slots: CompileSlots::default(),
            failed: FailedCompiles::new(limits.failed_cache_entries),
            compiles: AtomicU64::new(0),
        }
    }

    /// Compiles started since the service was made (cache hits and refusals start none).
    pub fn compiles_started(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Counts one upload request of `owner` against its per-minute quota, or refuses it with
    /// the wait (`TooMany`). Called before the body is read, so an owner over its rate cannot
    /// make the host receive the bytes; every admitted request counts, whatever its outcome.
    pub fn admit_upload(&self, owner: &str, quota: &PluginQuota) -> Result<(), AdminError> {
        let Some(limit) = quota.uploads_per_minute else { return Ok(()) };
        self.rate.admit(owner, limit, Instant::now()).map_err(|wait| {
            count_refused(owner, "rate");
            let secs = wait.as_secs().max(1);
            AdminError::TooMany {
                message: format!("at most {limit} plugin uploads per minute for this tenant; retry in {secs} s"),
                retry_after: Some(secs),
            }
        })
    }

    /// Holds one of `tenant`'s compile slots, as a running upload does (for tests).
    #[doc(hidden)]
    pub fn hold_compile_slot(&self, tenant: &str) -> Option<super::limits::CompileSlot> {
        self.slots.try_acquire(tenant, usize::MAX)
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
        let bytes = self.compile(owner, bytes, quota).await?;
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

impl PluginService {
    /// Refuses what a host could not load, before any host sees it: bytes that failed before
    /// at once, with the error they failed with; others compiled off the async workers within
    /// the owner's concurrent-compile quota and the compile timeout.
    async fn compile(&self, owner: Option<&str>, bytes: Vec<u8>, quota: PluginQuota) -> Result<Vec<u8>, AdminError> {
        let sha256 = crate::plugin::sha256_hex(&bytes);
        let who = owner.unwrap_or("operator");
        if let Some(rule) = self.failed.get(&sha256) {
            count_refused(who, "failed_before");
            tracing::info!(owner = who, %sha256, "plugin upload refused: these bytes failed to compile before");
            return Err(AdminError::rejected("module", rule));
        }
        let slot = match (owner, quota.concurrent_compiles) {
            (Some(o), Some(max)) => Some(self.slots.try_acquire(o, max).ok_or_else(|| {
                count_refused(o, "concurrent_compiles");
                AdminError::TooMany {
                    message: format!("this tenant already has {max} plugin compile(s) running; retry when it has finished"),
                    retry_after: Some(5),
                }
            })?),
            _ => None,
        };
        // Then one of the host's: the tenant's own slot is given back if this is refused.
        let host_slot = match owner {
            Some(o) => Some(self.slots.try_acquire(ALL_TENANTS, self.limits.max_compiles).ok_or_else(|| {
                count_refused(o, "host_compiles");
                AdminError::TooMany {
                    message: format!(
                        "the host is compiling as many uploaded modules as it allows at once ({}); retry in a few seconds",
                        self.limits.max_compiles
                    ),
                    retry_after: Some(5),
                }
            })?),
            None => None,
        };
        let engine = self.engine()?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("rtscore_plugin_compiles_total").increment(1);
        let outcome = compile_bounded(self.limits.timeout, move || {
            let _slots = (slot, host_slot);
            let r = engine.compile(&bytes).map(|_| ()).map_err(|e| e.to_string());
            engine.purge_unused();
            r.map(|()| bytes)
        })
        .await
        .context("compiling the module")?;
        let rule = match outcome {
            Ok(bytes) => return Ok(bytes),
            Err(CompileFailure::Invalid(e)) => {
                count_refused(who, "invalid");
                format!("must be a loadable rtscore:scoring component ({})", cap_error(&e))
            }
            Err(CompileFailure::TimedOut(t)) => {
                count_refused(who, "compile_timeout");
                format!(
                    "took longer than {} s to compile, the host's limit; it is refused, and these bytes are refused at once from now on \
                     (publish a smaller module, or ask an operator)",
                    t.as_secs_f64()
                )
            }
        };
        tracing::info!(owner = who, %sha256, error = %rule, "plugin upload refused");
        self.failed.insert(&sha256, &rule);
        Err(AdminError::rejected("module", rule))
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
        let small = PluginQuota { max_module_bytes: 8, max_modules_per_tenant: Some(1), ..PluginQuota::TENANT };
        assert!(matches!(svc.publish(Some("t"), "demo", "1", vec![0; 9], small).await, Err(AdminError::Quota(_))));
        let err = svc.publish(Some("t"), "Demo", "1", vec![0; 4], small).await.unwrap_err();
        assert_eq!(err.field_errors()[0].path, "name");
        let err = svc.publish(Some("t"), "demo", "1", b"\0asm junk".to_vec(), PluginQuota::TENANT).await.unwrap_err();
        assert_eq!(err.field_errors()[0].path, "module");
        assert!(svc.list(None).await.unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn bytes_that_failed_once_are_refused_with_the_same_error_without_compiling() {
        let dir = tempfile::tempdir().unwrap();
        let svc = PluginService::new(PluginTarget::Dir(dir.path().to_path_buf()));
        let junk = b"\0asm\x0d\0\x01\0 junk".to_vec();
        let first = svc.publish(Some("t"), "demo", "1", junk.clone(), PluginQuota::TENANT).await.unwrap_err();
        assert_eq!(svc.compiles_started(), 1);
        // Under another name and by another tenant: the bytes decide.
        let again = svc.publish(Some("u"), "other", "2", junk, PluginQuota::TENANT).await.unwrap_err();
        assert_eq!(svc.compiles_started(), 1, "the second upload compiled nothing");
        assert_eq!(again.to_string(), first.to_string());
        assert_eq!(again.field_errors()[0].path, "module");
    }

    #[tokio::test]
    async fn a_tenant_compiles_one_module_at_a_time_and_uploads_at_a_bounded_rate() {
        let dir = tempfile::tempdir().unwrap();
        let svc = PluginService::new(PluginTarget::Dir(dir.path().to_path_buf()));
        let busy = svc.hold_compile_slot("t").unwrap();
        let err = svc.publish(Some("t"), "demo", "1", b"\0asm other".to_vec(), PluginQuota::TENANT).await.unwrap_err();
        assert!(matches!(&err, AdminError::TooMany { retry_after: Some(_), .. }), "{err}");
        assert_eq!(svc.compiles_started(), 0);
        // Another tenant is not held up.
        let other = svc.publish(Some("u"), "demo", "1", b"\0asm other".to_vec(), PluginQuota::TENANT).await.unwrap_err();
        assert_eq!(other.field_errors()[0].path, "module");
        drop(busy);
        // Host-wide: with every host slot taken, any tenant waits.
        let host = PluginService::with_limits(
            PluginTarget::Dir(dir.path().to_path_buf()),
            CompileLimits { max_compiles: 1, ..CompileLimits::default() },
        );
        let taken = host.hold_compile_slot(ALL_TENANTS).unwrap();
        let err = host.publish(Some("v"), "demo", "1", b"\0asm v".to_vec(), PluginQuota::TENANT).await.unwrap_err();
        assert!(matches!(&err, AdminError::TooMany { .. }) && err.to_string().contains("the host"), "{err}");
        drop(taken);
        assert_eq!(
            host.publish(Some("v"), "demo", "1", b"\0asm v".to_vec(), PluginQuota::TENANT).await.unwrap_err().field_errors()[0].path,
            "module"
        );
        let quota = PluginQuota { uploads_per_minute: Some(1), ..PluginQuota::TENANT };
        svc.admit_upload("r", &quota).unwrap();
        let err = svc.admit_upload("r", &quota).unwrap_err();
        assert!(matches!(&err, AdminError::TooMany { retry_after: Some(s), .. } if (1..=60).contains(s)), "{err}");
        svc.admit_upload("other", &quota).unwrap();
        svc.admit_upload("r", &PluginQuota::OPERATOR).unwrap();
    }

    #[tokio::test]
    async fn a_compile_past_the_timeout_is_refused_and_keeps_its_slot_until_it_ends() {
        let slots = CompileSlots::default();
        let slot = slots.try_acquire("t", 1).unwrap();
        let slow = compile_bounded(Duration::from_millis(50), move || {
            let _slot = slot;
            std::thread::sleep(Duration::from_millis(400));
            Ok(())
        });
        assert_eq!(slow.await.unwrap(), Err(CompileFailure::TimedOut(Duration::from_millis(50))));
        assert_eq!(slots.running("t"), 1, "the compile still runs in the background");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(slots.running("t"), 0);
        let fast = compile_bounded(Duration::from_secs(5), || Err::<(), _>("bad".to_string()));
        assert_eq!(fast.await.unwrap(), Err(CompileFailure::Invalid("bad".into())));
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
