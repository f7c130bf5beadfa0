//! Publishing and listing plugin modules: a module is checked against the quota, compiled in
//! the sandbox (a module no host could load is refused before any host sees it), then written
//! to the plugins directory or the fleet's MongoDB with its sha256. Modules published for a
//! tenant record that tenant as their owner; only the owner (or an admin) replaces them.
//!
//! Namespaces: a tenant's scenarios may reference its own modules and shared ones. A module
//! without an owner (an operator's: put in the directory by hand or published with
//! `rtscore plugin publish` / an admin call) is shared; a tenant's module is shared once an
//! admin marks it so ([`PluginService::set_shared`]). Tenants list their own and the shared
//! modules; another tenant's unshared module is invisible to them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
#[cfg(feature = "mongodb")]
use bson::{Document, doc};
use serde::Serialize;

use super::AdminError;
use super::limits::{CompileSlots, FailedCompiles, UploadRate};
use crate::config::plugin_limits::{DEFAULT_MAX_MODULE_BYTES, MAX_MODULE_BYTES, SandboxLimits};
use crate::config::tenant::TenantQuotas;
use crate::plugin::registry::{list_dir_modules, owner_path, shared_path};
#[cfg(feature = "mongodb")]
use crate::plugin::registry::{list_mongo_modules, publish_to_mongo_as};
use crate::plugin::{Grants, ModuleId, ModuleInfo, PluginEngine, PluginError, publish_to_dir};
use crate::text::cap_error;

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
        max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
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
    #[cfg(feature = "mongodb")]
    Mongo(mongodb::Collection<Document>),
}

impl PluginTarget {
    /// The fleet's MongoDB `plugins` collection when `mongodb_url` is given, else `plugins_dir`.
    pub async fn open(mongodb_url: Option<&str>, database: &str, plugins_dir: &std::path::Path) -> anyhow::Result<Self> {
        match mongodb_url {
            #[cfg(feature = "mongodb")]
            Some(url) => Ok(PluginTarget::Mongo(crate::config::mongo::MongoScenarioStore::connect(url, database).await?.plugins())),
            #[cfg(not(feature = "mongodb"))]
            Some(url) => {
                let _ = database;
                anyhow::bail!("cannot open MongoDB at {url}: {}", crate::config::mongo::NOT_BUILT)
            }
            None => Ok(PluginTarget::Dir(plugins_dir.to_path_buf())),
        }
    }
}

/// One published module and who owns it (`None`: published by an operator, shared).
#[derive(Debug, Clone, Serialize)]
pub struct PublishedModule {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    /// The owning tenant; in a tenant's listing, only ever that tenant (other owners of shared
    /// modules are not disclosed).
    pub owner: Option<String>,
    /// Every tenant may reference it (an operator's module, or one an admin shared).
    pub shared: bool,
}

impl PublishedModule {
    fn of(info: ModuleInfo, owner: Option<String>) -> Self {
        let shared = owner.is_none() || info.shared;
        Self { name: info.id.name, version: info.id.version, sha256: info.sha256, size: info.size, owner, shared }
    }

    /// Whether scenarios of `tenant` may reference it.
    pub fn usable_by(&self, tenant: &str) -> bool {
        self.shared || self.owner.as_deref() == Some(tenant)
    }

    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
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
    /// Where compiled components are kept across restarts (`plugin::disk_cache`): a module
    /// checked at publish is then read back by the hosts of this machine instead of compiled
    /// again (seconds for a Python or JavaScript one).
    cache_dir: Option<PathBuf>,
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
            cache_dir: None,
        }
    }

    /// The same service keeping the components it compiles in `dir` (a host passes its
    /// `--plugin-cache-dir`; `rtscore plugin publish` the default directory).
    pub fn with_compile_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
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
        let engine = Arc::new(
            PluginEngine::with_disk_cache(SandboxLimits::default(), Grants::default(), self.cache_dir.as_deref())
                .context("creating the plugin engine")?,
        );
        Ok(Arc::clone(self.engine.get_or_init(|| engine)))
    }

    pub fn describe(&self) -> String {
        match &self.target {
            PluginTarget::Dir(d) => d.display().to_string(),
            #[cfg(feature = "mongodb")]
            PluginTarget::Mongo(_) => "MongoDB".to_string(),
        }
    }

    /// Every published module (`None`, for operators and admins), or those scenarios of
    /// `tenant` may reference: its own and the shared ones, without the owners of shared
    /// modules that are not its own.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<PublishedModule>, AdminError> {
        let infos = match &self.target {
            PluginTarget::Dir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || list_dir_modules(&dir)).await.context("listing plugins")?.map_err(registry_err)?
            }
            #[cfg(feature = "mongodb")]
            PluginTarget::Mongo(coll) => list_mongo_modules(coll).await.map_err(registry_err)?,
        };
        let mut all: Vec<PublishedModule> = infos
            .into_iter()
            .filter(|i| tenant.is_none_or(|t| i.usable_by(t)))
            .map(|i| {
                let owner = i.owner.clone().filter(|o| tenant.is_none_or(|t| t == o));
                let shared = i.is_shared();
                PublishedModule { shared, ..PublishedModule::of(i, owner) }
            })
            .collect();
        all.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(all)
    }

    /// Refuses a scenario document of `tenant` whose plugin references (live and candidate)
    /// name a module outside the tenant's namespace. A missing module and another tenant's
    /// get the same answer.
    pub async fn check_references(&self, tenant: &str, doc: &serde_json::Value) -> Result<(), AdminError> {
        let refs = plugin_references(doc);
        if refs.is_empty() {
            return Ok(());
        }
        let visible = self.list(Some(tenant)).await?;
        let errors: Vec<crate::config::FieldError> = refs
            .into_iter()
            .filter(|(_, name, version)| !visible.iter().any(|m| &m.name == name && &m.version == version))
            .map(|(path, name, version)| crate::config::FieldError {
                path: path.to_string(),
                rule: crate::plugin::PluginError::NotVisible { reference: format!("{name}@{version}"), tenant: tenant.to_string() }
                    .to_string(),
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(AdminError::Rejected(errors)) }
    }

    /// Marks a module shared with every tenant, or takes the mark off (admins only; the API
    /// and CLI check the caller). Unsharing is refused (`Conflict`) while scenarios of other
    /// tenants reference the module, so none loses its module mid-flight; an operator's module
    /// (no owner) is shared by definition and cannot be unshared.
    pub async fn set_shared(
        &self,
        scenarios: &super::ScenarioService,
        name: &str,
        version: &str,
        shared: bool,
    ) -> Result<PublishedModule, AdminError> {
        let id = ModuleId::new(name, version).map_err(|e| match e {
            PluginError::InvalidName { field, rule, .. } => AdminError::rejected(field, format!("must match {rule}")),
            other => AdminError::rejected("plugin", other.to_string()),
        })?;
        let Some(mut m) = self.list(None).await?.into_iter().find(|m| m.name == id.name && m.version == id.version) else {
            return Err(AdminError::PluginNotFound(id.to_string()));
        };
        let Some(owner) = m.owner.clone() else {
            if shared {
                return Ok(m);
            }
            return Err(AdminError::Conflict(format!(
                "plugin {id} has no owner: an operator's module is shared with every tenant; remove it from the registry to withdraw it"
            )));
        };
        if m.shared == shared {
            return Ok(m);
        }
        if !shared {
            let users: Vec<String> = scenarios
                .list(None)
                .await?
                .iter()
                .filter(|d| d.get("tenant_id").and_then(serde_json::Value::as_str) != Some(owner.as_str()))
                .filter(|d| plugin_references(d).iter().any(|(_, n, v)| *n == id.name && *v == id.version))
                .map(|d| format!("{}/{}", d["tenant_id"].as_str().unwrap_or("?"), d["scenario_id"].as_str().unwrap_or("?")))
                .collect();
            if !users.is_empty() {
                return Err(AdminError::Conflict(format!(
                    "plugin {id} is referenced by {} scenario(s) of other tenants ({}); point them at another module first, then unshare it",
                    users.len(),
                    users.join(", ")
                )));
            }
        }
        match &self.target {
            PluginTarget::Dir(dir) => {
                let mark = shared_path(dir, &id);
                if shared {
                    tokio::fs::write(&mark, b"").await.with_context(|| format!("writing {}", mark.display()))?;
                } else {
                    match tokio::fs::remove_file(&mark).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(anyhow::Error::new(e).context(format!("removing {}", mark.display())).into()),
                    }
                }
            }
            #[cfg(feature = "mongodb")]
            PluginTarget::Mongo(coll) => {
                let update = if shared {
                    doc! {"$set": {"shared": true}}
                } else {
                    doc! {"$unset": {"shared": ""}}
                };
                coll.update_one(doc! {"name": &id.name, "version": &id.version}, update).await.context("recording the shared mark")?;
            }
        }
        tracing::info!(plugin = %id, %owner, shared, "plugin module sharing changed");
        m.shared = shared;
        Ok(m)
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
                // The owner is recorded first, so neither a listing nor a host's index ever sees
                // the module unowned (which would make it shared).
                let sidecar = owner_path(dir, &id);
                // A new module starts unshared (a mark left by a removed module must not carry over).
                let mark = shared_path(dir, &id);
                match tokio::fs::remove_file(&mark).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(anyhow::Error::new(e).context(format!("removing {}", mark.display())).into()),
                }
                match owner {
                    Some(o) => tokio::fs::write(&sidecar, o).await.with_context(|| format!("writing {}", sidecar.display()))?,
                    None => {
                        let _ = tokio::fs::remove_file(&sidecar).await;
                    }
                }
                publish_to_dir(dir, name, version, &bytes).await.map_err(registry_err)?
            }
            #[cfg(feature = "mongodb")]
            PluginTarget::Mongo(coll) => {
                // The owner is recorded with the module, so no poll sees it unowned (shared).
                publish_to_mongo_as(coll, name, version, &bytes, owner).await.map_err(registry_err)?
            }
        };
        Ok(PublishedModule::of(info, owner.map(str::to_string)))
    }
}

/// How a plugin is built so that it loads (docs/plugins.md).
const BUILD_HINT: &str =
    "build the plugin with `cargo build --release --target wasm32-wasip2` and publish target/wasm32-wasip2/release/<crate>.wasm";

/// What to do about bytes that are not a component, from their first 8 bytes: a core
/// WebAssembly module or no WebAssembly at all is a build mistake, and the fix is the target.
fn build_hint(head: &[u8; 8]) -> String {
    match (&head[..4], &head[4..]) {
        (b"\0asm", [0x01, 0x00, 0x00, 0x00]) => format!(
            "; this is a core WebAssembly module, not a component (wasm32-unknown-unknown and wasm32-wasip1 build those): {BUILD_HINT}"
        ),
        (b"\0asm", _) => String::new(),
        _ => format!("; this is not WebAssembly at all: {BUILD_HINT}"),
    }
}

impl PluginService {
    /// Refuses what a host could not load, before any host sees it: bytes that failed before
    /// at once, with the error they failed with; others compiled off the async workers within
    /// the owner's concurrent-compile quota and the compile timeout.
    async fn compile(&self, owner: Option<&str>, bytes: Vec<u8>, quota: PluginQuota) -> Result<Vec<u8>, AdminError> {
        let sha256 = crate::plugin::sha256_hex(&bytes);
        let head: [u8; 8] = std::array::from_fn(|i| bytes.get(i).copied().unwrap_or(0));
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
                format!("must be a loadable rtscore:scoring component ({}){}", cap_error(&e), build_hint(&head))
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

/// The plugin references of a raw scenario document, with their field paths: the live
/// `hot_score.plugin` and the candidate's (`candidate.plugin` or `candidate.hot_score.plugin`).
/// Read from the raw document so that even a document that fails validation is counted.
pub fn plugin_references(doc: &serde_json::Value) -> Vec<(&'static str, String, String)> {
    const PATHS: [(&str, &str); 3] = [
        ("config.realtime_compute.hot_score.plugin", "/config/realtime_compute/hot_score/plugin"),
        ("candidate.plugin", "/candidate/plugin"),
        ("candidate.hot_score.plugin", "/candidate/hot_score/plugin"),
    ];
    PATHS
        .iter()
        .filter_map(|(path, pointer)| {
            let p = doc.pointer(pointer)?;
            Some((*path, p.get("name")?.as_str()?.to_string(), p.get("version")?.as_str()?.to_string()))
        })
        .collect()
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
    async fn a_core_module_or_other_bytes_are_refused_with_the_build_target_to_use() {
        let dir = tempfile::tempdir().unwrap();
        let svc = PluginService::new(PluginTarget::Dir(dir.path().to_path_buf()));
        let mut rules = Vec::new();
        // The smallest core module (magic and version 1, no sections), a script, a broken component.
        for bytes in [&b"\0asm\x01\0\0\0"[..], b"#!/bin/sh\necho not wasm\n", b"\0asm\x0d\0\x01\0 junk"] {
            let err = svc.publish(Some("t"), "demo", "1", bytes.to_vec(), PluginQuota::TENANT).await.unwrap_err();
            rules.push(err.field_errors()[0].rule.clone());
        }
        let [core, text, component] = &rules[..] else { panic!("{rules:?}") };
        assert!(core.contains("core WebAssembly module, not a component") && core.contains("--target wasm32-wasip2"), "{core}");
        assert!(text.contains("not WebAssembly at all") && text.contains("--target wasm32-wasip2"), "{text}");
        assert!(!component.contains("--target"), "a broken component needs no build hint: {component}");
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

    /// `a-mod@1` owned by tenant `a`, `ops@1` an operator's; scenarios in their own directory.
    async fn namespace_world() -> (tempfile::TempDir, PluginService, super::super::ScenarioService) {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
        publish_to_dir(&plugins, "ops", "1", b"ops").await.unwrap();
        std::fs::write(owner_path(&plugins, &ModuleId::new("a-mod", "1").unwrap()), "a").unwrap();
        publish_to_dir(&plugins, "a-mod", "1", b"a").await.unwrap();
        let store = crate::config::store::ScenarioStore::Dir(dir.path().join("scenarios"));
        (dir, PluginService::new(PluginTarget::Dir(plugins)), super::super::ScenarioService::new(store))
    }

    fn with_plugin(tenant: &str, name: &str) -> serde_json::Value {
        serde_json::json!({"tenant_id": tenant, "scenario_id": "s",
            "config": {"realtime_compute": {"hot_score": {"plugin": {"name": name, "version": "1"}}}}})
    }

    #[tokio::test]
    async fn tenants_see_and_reference_their_own_and_shared_modules_only() {
        let (_dir, svc, _) = namespace_world().await;
        let labels = |v: Vec<PublishedModule>| v.iter().map(|m| (m.label(), m.shared, m.owner.clone())).collect::<Vec<_>>();
        assert_eq!(
            labels(svc.list(Some("a")).await.unwrap()),
            vec![("a-mod@1".into(), false, Some("a".into())), ("ops@1".into(), true, None)]
        );
        assert_eq!(labels(svc.list(Some("b")).await.unwrap()), vec![("ops@1".into(), true, None)]);
        assert_eq!(svc.list(None).await.unwrap().len(), 2, "operators see everything");
        svc.check_references("a", &with_plugin("a", "a-mod")).await.unwrap();
        svc.check_references("b", &with_plugin("b", "ops")).await.unwrap();
        let foreign = svc.check_references("b", &with_plugin("b", "a-mod")).await.unwrap_err();
        let missing = svc.check_references("b", &with_plugin("b", "none")).await.unwrap_err();
        assert_eq!(foreign.field_errors()[0].path, "config.realtime_compute.hot_score.plugin");
        assert_eq!(foreign.field_errors()[0].rule, missing.field_errors()[0].rule.replace("none@1", "a-mod@1"), "nothing tells them apart");
        assert!(foreign.to_string().contains("no module `a-mod@1` owned by tenant `b` or shared"), "{foreign}");
        // A candidate is checked too.
        let cand = serde_json::json!({"tenant_id": "b", "scenario_id": "s", "candidate": {"plugin": {"name": "a-mod", "version": "1"}}});
        assert_eq!(svc.check_references("b", &cand).await.unwrap_err().field_errors()[0].path, "candidate.plugin");
        // Another tenant cannot replace a shared or foreign module.
        let err = svc.publish(Some("b"), "ops", "1", b"ops".to_vec(), PluginQuota::TENANT).await.unwrap_err();
        assert!(matches!(err, AdminError::NotOwner(_)), "{err}");
    }

    #[tokio::test]
    async fn sharing_widens_the_namespace_and_unsharing_waits_for_other_tenants() {
        let (_dir, svc, scenarios) = namespace_world().await;
        let m = svc.set_shared(&scenarios, "a-mod", "1", true).await.unwrap();
        assert!(m.shared && m.owner.as_deref() == Some("a"));
        let seen = svc.list(Some("b")).await.unwrap();
        let lent = seen.iter().find(|m| m.name == "a-mod").expect("b sees the shared module");
        assert!(lent.shared && lent.owner.is_none(), "its owner is not disclosed to b: {lent:?}");
        svc.check_references("b", &with_plugin("b", "a-mod")).await.unwrap();
        // b's scenario uses it: unsharing is refused, naming how many scenarios (admins only call this).
        scenarios.put_document(with_plugin("b", "a-mod"), &crate::config::switch::EffectiveFrom::Immediately, None).await.unwrap();
        scenarios.put_document(with_plugin("a", "a-mod"), &crate::config::switch::EffectiveFrom::Immediately, None).await.unwrap();
        let err = svc.set_shared(&scenarios, "a-mod", "1", false).await.unwrap_err();
        assert!(matches!(&err, AdminError::Conflict(m) if m.contains("1 scenario(s) of other tenants (b/s)")), "{err}");
        scenarios.delete("b", "s").await.unwrap();
        assert!(!svc.set_shared(&scenarios, "a-mod", "1", false).await.unwrap().shared, "the owner's own scenario does not hold it");
        assert!(svc.list(Some("b")).await.unwrap().iter().all(|m| m.name != "a-mod"));
        // An operator's module is always shared; a missing one is a 404.
        assert!(svc.set_shared(&scenarios, "ops", "1", true).await.unwrap().shared);
        assert!(matches!(svc.set_shared(&scenarios, "ops", "1", false).await, Err(AdminError::Conflict(_))));
        assert!(matches!(svc.set_shared(&scenarios, "nope", "1", true).await, Err(AdminError::PluginNotFound(_))));
    }
}
