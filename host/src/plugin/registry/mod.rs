//! Where plugin modules come from: an index of `name@version` modules with their sha256, owner
//! and shared mark, fed by a watched directory and/or a polled MongoDB collection, and a channel
//! announcing which modules changed so references to them are re-resolved.
//!
//! Namespaces: a scenario's reference resolves only to a module its tenant may use
//! ([`ModuleInfo::usable_by`]): one the tenant owns, else a shared one (no owner, i.e. placed by
//! an operator, or marked shared by an admin). Anything else looks exactly like a missing module
//! ([`PluginError::NotVisible`]), so a tenant learns nothing about other tenants' modules.

mod dir;
#[cfg(feature = "mongodb")]
mod mongo;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc};

pub use dir::{owner_path, publish_to_dir, shared_path};
#[cfg(feature = "mongodb")]
pub use mongo::{publish_to_mongo, publish_to_mongo_as};

use super::engine::sha256_hex;
use super::error::PluginError;
use crate::config::PluginRef;
use crate::config::plugin_limits::MAX_MODULE_BYTES;

/// Quiet time after a directory event before rescanning, so a copy in progress settles.
pub const DIR_DEBOUNCE: Duration = Duration::from_millis(100);

/// `name@version` of a module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId {
    pub name: String,
    pub version: String,
}

impl ModuleId {
    /// A validated id: name `[a-z0-9][a-z0-9_-]{0,63}`, version `[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}`.
    pub fn new(name: &str, version: &str) -> Result<Self, PluginError> {
        let name_ok = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !name_ok {
            return Err(PluginError::InvalidName { field: "name", value: name.into(), rule: "[a-z0-9][a-z0-9_-]{0,63}" });
        }
        let version_ok = version.len() <= 64
            && version.starts_with(|c: char| c.is_ascii_alphanumeric())
            && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '_' | '-'));
        if !version_ok {
            return Err(PluginError::InvalidName { field: "version", value: version.into(), rule: "[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}" });
        }
        Ok(Self { name: name.into(), version: version.into() })
    }

    pub fn of(r: &PluginRef) -> Self {
        Self { name: r.name.clone(), version: r.version.clone() }
    }

    /// The id of a module file `<name>@<version>.wasm`.
    pub fn from_file_name(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_suffix(".wasm")?;
        let (name, version) = stem.split_once('@')?;
        Self::new(name, version).ok()
    }

    pub fn file_name(&self) -> String {
        format!("{self}.wasm")
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Where a module's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    Dir(PathBuf),
    Mongo,
}

/// One indexed module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleInfo {
    pub id: ModuleId,
    /// Lower-case hex sha256 of the bytes.
    pub sha256: String,
    pub size: u64,
    /// File modification time, or the MongoDB document's `published_at`.
    pub modified: Option<SystemTime>,
    pub source: ModuleSource,
    /// The tenant that published it through the admin API; `None`: placed or published by an
    /// operator.
    pub owner: Option<String>,
    /// Marked shared by an admin (`rtscore plugin share`): every tenant may reference it.
    pub shared: bool,
}

impl ModuleInfo {
    /// Whether every tenant may reference it: an operator's module (no owner) always is, a
    /// tenant's only once an admin marked it shared.
    pub fn is_shared(&self) -> bool {
        self.owner.is_none() || self.shared
    }

    /// Whether scenarios of `tenant` may reference it: its own modules and shared ones.
    pub fn usable_by(&self, tenant: &str) -> bool {
        self.is_shared() || self.owner.as_deref() == Some(tenant)
    }
}

/// Modules added, removed or replaced by one rescan or poll.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegistryChange {
    pub changed: BTreeSet<ModuleId>,
}

impl RegistryChange {
    /// Whether a scenario's reference points at a changed module.
    pub fn affects(&self, r: &PluginRef) -> bool {
        self.changed.iter().any(|id| id.name == r.name && id.version == r.version)
    }
}

/// A module's bytes, verified against its sha256.
#[derive(Debug, Clone)]
pub struct ResolvedModule {
    pub info: ModuleInfo,
    pub bytes: Arc<[u8]>,
}

type Index = BTreeMap<ModuleId, ModuleInfo>;

/// The plugin registry. Cheap to clone; background watchers stop when the last clone drops.
#[derive(Clone)]
pub struct PluginRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    dir: Mutex<Option<DirSource>>,
    dir_index: Mutex<Index>,
    #[cfg(feature = "mongodb")]
    mongo: Mutex<Option<mongodb::Collection<bson::Document>>>,
    mongo_index: Mutex<Index>,
    changes: broadcast::Sender<RegistryChange>,
    /// Unpinned references already warned about, by module and sha256.
    warned: Mutex<HashSet<(ModuleId, String)>>,
}

struct DirSource {
    path: PathBuf,
    _watcher: notify::RecommendedWatcher,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves its data whole, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for PluginRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginRegistry {
    /// A registry with no sources yet.
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(64);
        Self {
            inner: Arc::new(Inner {
                dir: Mutex::new(None),
                dir_index: Mutex::new(Index::new()),
                #[cfg(feature = "mongodb")]
                mongo: Mutex::new(None),
                mongo_index: Mutex::new(Index::new()),
                changes,
                warned: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Indexes the modules in `dir` (`<name>@<version>.wasm`, created if missing) and watches it: additions,
    /// replacements and removals are indexed ~[`DIR_DEBOUNCE`] after the last change and
    /// announced on [`PluginRegistry::subscribe`]. Must be called inside a tokio runtime.
    pub async fn watch_dir(&self, dir: impl Into<PathBuf>) -> Result<(), PluginError> {
        let path: PathBuf = dir.into();
        // A fresh checkout has no built plugins yet: start from an empty directory.
        tokio::fs::create_dir_all(&path).await.map_err(|e| PluginError::Registry(format!("creating {}: {e}", path.display())))?;
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let watcher = dir::watch(&path, tx)?;
        *lock(&self.inner.dir) = Some(DirSource { path: path.clone(), _watcher: watcher });
        self.rescan_dir().await?;
        tokio::spawn(dir_events(Arc::downgrade(&self.inner), rx));
        tracing::info!(dir = %path.display(), modules = lock(&self.inner.dir_index).len(), "watching plugin directory");
        Ok(())
    }

    /// Indexes the modules of a MongoDB `plugins` collection and polls it every `interval`.
    #[cfg(feature = "mongodb")]
    /// Must be called inside a tokio runtime.
    pub async fn poll_mongo(&self, collection: mongodb::Collection<bson::Document>, interval: Duration) -> Result<(), PluginError> {
        *lock(&self.inner.mongo) = Some(collection.clone());
        self.inner.poll_mongo_once(&collection).await?;
        tokio::spawn(mongo_polls(Arc::downgrade(&self.inner), collection, interval));
        Ok(())
    }

    /// Announcements of changed modules. A receiver that lags (`RecvError::Lagged`) missed
    /// some: it should re-resolve every reference.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryChange> {
        self.inner.changes.subscribe()
    }

    /// Every indexed module (directory first, then MongoDB).
    pub fn modules(&self) -> Vec<ModuleInfo> {
        let mut all: Vec<ModuleInfo> = lock(&self.inner.dir_index).values().cloned().collect();
        all.extend(lock(&self.inner.mongo_index).values().cloned());
        all
    }

    /// The module a reference resolves to, from the index alone (no I/O), without namespaces
    /// (operator tools and tests): with a pinned sha256, the source holding exactly that module;
    /// unpinned, the directory's, else MongoDB's.
    pub fn lookup(&self, r: &PluginRef) -> Result<ModuleInfo, PluginError> {
        self.lookup_in(None, r)
    }

    /// [`Self::lookup`] in `tenant`'s namespace: only modules the tenant owns or shared ones
    /// are candidates, its own first. A module of another tenant is reported exactly like a
    /// missing one ([`PluginError::NotVisible`]), and a hash mismatch only ever quotes a
    /// module the tenant may see.
    pub fn lookup_for(&self, tenant: &str, r: &PluginRef) -> Result<ModuleInfo, PluginError> {
        self.lookup_in(Some(tenant), r)
    }

    fn lookup_in(&self, tenant: Option<&str>, r: &PluginRef) -> Result<ModuleInfo, PluginError> {
        let id = ModuleId::of(r);
        let mut candidates: Vec<ModuleInfo> =
            [lock(&self.inner.dir_index).get(&id).cloned(), lock(&self.inner.mongo_index).get(&id).cloned()]
                .into_iter()
                .flatten()
                .filter(|m| tenant.is_none_or(|t| m.usable_by(t)))
                .collect();
        if let Some(t) = tenant {
            // Stable: among equals the directory stays first.
            candidates.sort_by_key(|m| m.owner.as_deref() != Some(t));
        }
        let Some(first) = candidates.first() else {
            return Err(match tenant {
                Some(t) => PluginError::NotVisible { reference: id.to_string(), tenant: t.to_string() },
                None => PluginError::NotFound { reference: id.to_string() },
            });
        };
        match pinned(r) {
            Some(want) => candidates.iter().find(|c| c.sha256 == want).cloned().ok_or_else(|| PluginError::HashMismatch {
                reference: id.to_string(),
                expected: want,
                actual: first.sha256.clone(),
            }),
            None => Ok(first.clone()),
        }
    }

    /// Finds the module of a reference (without namespaces, see [`Self::lookup`]) and reads its
    /// bytes, verifying them against the pinned sha256 ([`PluginError::HashMismatch`]
    /// otherwise). An unpinned reference takes the module found and is warned about once per
    /// module content.
    pub async fn resolve(&self, r: &PluginRef) -> Result<ResolvedModule, PluginError> {
        let info = self.lookup(r)?;
        self.read_verified(info, r).await
    }

    /// [`Self::resolve`] in `tenant`'s namespace (see [`Self::lookup_for`]).
    pub async fn resolve_for(&self, tenant: &str, r: &PluginRef) -> Result<ResolvedModule, PluginError> {
        let info = self.lookup_for(tenant, r)?;
        self.read_verified(info, r).await
    }

    async fn read_verified(&self, info: ModuleInfo, r: &PluginRef) -> Result<ResolvedModule, PluginError> {
        let bytes: Arc<[u8]> = match &info.source {
            ModuleSource::Dir(path) => {
                let bytes = tokio::fs::read(path).await.map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => PluginError::NotFound { reference: info.id.to_string() },
                    _ => PluginError::Registry(format!("reading {}: {e}", path.display())),
                })?;
                bytes.into()
            }
            #[cfg(feature = "mongodb")]
            ModuleSource::Mongo => {
                let coll = lock(&self.inner.mongo).clone().ok_or_else(|| PluginError::Registry("no MongoDB source".into()))?;
                mongo::fetch_module(&coll, &info.id).await?.into()
            }
            #[cfg(not(feature = "mongodb"))]
            ModuleSource::Mongo => return Err(PluginError::Registry(crate::config::mongo::NOT_BUILT.into())),
        };
        let hashed = Arc::clone(&bytes);
        let sha256 = tokio::task::spawn_blocking(move || sha256_hex(&hashed))
            .await
            .map_err(|e| PluginError::Registry(format!("hashing {}: {e}", info.id)))?;
        match pinned(r) {
            Some(expected) if expected != sha256 => {
                return Err(PluginError::HashMismatch { reference: info.id.to_string(), expected, actual: sha256 });
            }
            Some(_) => {}
            None => {
                if lock(&self.inner.warned).insert((info.id.clone(), sha256.clone())) {
                    tracing::warn!(plugin = %info.id, %sha256, "plugin reference is not pinned; pin this sha256 in the scenario for production");
                }
            }
        }
        Ok(ResolvedModule { info: ModuleInfo { sha256, size: bytes.len() as u64, ..info }, bytes })
    }

    /// Publishes a module to this registry's MongoDB collection if it has one, else to its
    /// directory. The module is indexed and announced by the next poll or rescan.
    pub async fn publish(&self, name: &str, version: &str, bytes: &[u8]) -> Result<ModuleInfo, PluginError> {
        #[cfg(feature = "mongodb")]
        {
            let coll = lock(&self.inner.mongo).clone();
            if let Some(coll) = coll {
                return publish_to_mongo(&coll, name, version, bytes).await;
            }
        }
        let dir = lock(&self.inner.dir).as_ref().map(|d| d.path.clone());
        match dir {
            Some(dir) => publish_to_dir(&dir, name, version, bytes).await,
            None => Err(PluginError::Registry("the registry has no directory or MongoDB source to publish to".into())),
        }
    }

    /// Rescans the directory now (the watcher does this on its own).
    pub async fn rescan_dir(&self) -> Result<RegistryChange, PluginError> {
        self.inner.rescan_dir().await
    }
}

/// The pinned sha256 of a reference, lower-cased.
fn pinned(r: &PluginRef) -> Option<String> {
    r.sha256.as_ref().map(|s| s.trim().to_ascii_lowercase())
}

/// Modules that differ between two indexes (added, removed, with another sha256, or with
/// another owner or shared mark: who may reference them changed).
fn diff(old: &Index, new: &Index) -> BTreeSet<ModuleId> {
    let mut changed: BTreeSet<ModuleId> = old.keys().filter(|id| !new.contains_key(id)).cloned().collect();
    changed.extend(
        new.iter()
            .filter(|(id, m)| old.get(id).is_none_or(|o| o.sha256 != m.sha256 || o.owner != m.owner || o.shared != m.shared))
            .map(|(id, _)| id.clone()),
    );
    changed
}

impl Inner {
    async fn rescan_dir(self: &Arc<Self>) -> Result<RegistryChange, PluginError> {
        let Some(path) = lock(&self.dir).as_ref().map(|d| d.path.clone()) else {
            return Ok(RegistryChange::default());
        };
        let previous = lock(&self.dir_index).clone();
        let scan_path = path.clone();
        let scanned = tokio::task::spawn_blocking(move || dir::scan(&scan_path, &previous))
            .await
            .map_err(|e| PluginError::Registry(format!("scanning {}: {e}", path.display())))??;
        let change = {
            let mut index = lock(&self.dir_index);
            let change = RegistryChange { changed: diff(&index, &scanned) };
            *index = scanned;
            change
        };
        self.announce(&change, "directory");
        Ok(change)
    }

    #[cfg(feature = "mongodb")]
    async fn poll_mongo_once(self: &Arc<Self>, coll: &mongodb::Collection<bson::Document>) -> Result<RegistryChange, PluginError> {
        let polled = mongo::list(coll).await?;
        let change = {
            let mut index = lock(&self.mongo_index);
            let change = RegistryChange { changed: diff(&index, &polled) };
            *index = polled;
            change
        };
        self.announce(&change, "mongodb");
        Ok(change)
    }

    fn announce(&self, change: &RegistryChange, source: &str) {
        if change.changed.is_empty() {
            return;
        }
        let ids: Vec<String> = change.changed.iter().map(|id| id.to_string()).collect();
        tracing::info!(source, modules = ?ids, "plugin modules changed");
        metrics::counter!("rtscore_plugin_registry_changes_total", "source" => source.to_string()).increment(change.changed.len() as u64);
        // No receiver is fine: nobody references plugins yet.
        let _ = self.changes.send(change.clone());
    }
}

/// Debounces directory events and rescans; ends when the registry is dropped.
async fn dir_events(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        loop {
            match tokio::time::timeout(DIR_DEBOUNCE, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.rescan_dir().await {
            tracing::warn!(error = %e, "plugin directory rescan failed");
        }
    }
}

/// Polls MongoDB every `interval`; ends when the registry is dropped.
#[cfg(feature = "mongodb")]
async fn mongo_polls(inner: Weak<Inner>, coll: mongodb::Collection<bson::Document>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last_error: Option<String> = None;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        match inner.poll_mongo_once(&coll).await {
            Ok(_) => last_error = None,
            Err(e) => {
                // Warn when the failure starts or changes, not every second while it lasts.
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(error = %msg, "polling the MongoDB plugin registry failed; keeping the last index");
                }
                last_error = Some(msg);
            }
        }
    }
}

/// Checks a module's name, version and size before it is published anywhere.
fn check_publishable(name: &str, version: &str, bytes: &[u8]) -> Result<ModuleId, PluginError> {
    let id = ModuleId::new(name, version)?;
    if bytes.len() > MAX_MODULE_BYTES {
        return Err(PluginError::Registry(format!("{id} is {} bytes, above the {MAX_MODULE_BYTES}-byte limit", bytes.len())));
    }
    Ok(id)
}

/// Every module in a plugins directory, hashed; a missing directory holds none. For listings:
/// hosts keep a watched index instead.
pub fn list_dir_modules(dir: &Path) -> Result<Vec<ModuleInfo>, PluginError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(dir::scan(dir, &Index::new())?.into_values().collect())
}

/// Every module document of a MongoDB `plugins` collection (metadata only).
#[cfg(feature = "mongodb")]
pub async fn list_mongo_modules(coll: &mongodb::Collection<bson::Document>) -> Result<Vec<ModuleInfo>, PluginError> {
    Ok(mongo::list(coll).await?.into_values().collect())
}

/// Path of a module in a plugin directory.
pub fn module_path(dir: &Path, id: &ModuleId) -> PathBuf {
    dir.join(id.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, sha: &str) -> ModuleInfo {
        ModuleInfo {
            id: ModuleId::new(name, "0.1.0").unwrap(),
            sha256: sha.into(),
            size: 1,
            modified: None,
            source: ModuleSource::Mongo,
            owner: None,
            shared: false,
        }
    }

    #[test]
    fn ids_parse_and_validate() {
        let id = ModuleId::from_file_name("decay-weighted@0.1.0.wasm").unwrap();
        assert_eq!((id.name.as_str(), id.version.as_str()), ("decay-weighted", "0.1.0"));
        assert_eq!(id.file_name(), "decay-weighted@0.1.0.wasm");
        assert_eq!(ModuleId::from_file_name("x@1.0.0-rc.1+b2.wasm").unwrap().version, "1.0.0-rc.1+b2");
        for bad in ["noversion.wasm", "Upper@1.wasm", "a@.wasm", "@1.wasm", "a@1.txt", "../x@1.wasm", "a@1/2.wasm", ".a@1.wasm"] {
            assert_eq!(ModuleId::from_file_name(bad), None, "{bad}");
        }
        assert!(matches!(ModuleId::new("ok", "1@2"), Err(PluginError::InvalidName { field: "version", .. })));
    }

    #[test]
    fn diff_finds_added_removed_and_replaced() {
        let old: Index = [info("a", "1"), info("b", "2"), info("c", "3")].into_iter().map(|m| (m.id.clone(), m)).collect();
        let new: Index = [info("a", "1"), info("b", "9"), info("d", "4")].into_iter().map(|m| (m.id.clone(), m)).collect();
        let names: Vec<String> = diff(&old, &new).into_iter().map(|id| id.name).collect();
        assert_eq!(names, vec!["b", "c", "d"]);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn lookup_prefers_the_pinned_module_and_reports_mismatches() {
        let reg = PluginRegistry::new();
        let mut dir_copy = info("g", "aaa");
        dir_copy.source = ModuleSource::Dir("/p/g@0.1.0.wasm".into());
        lock(&reg.inner.dir_index).insert(dir_copy.id.clone(), dir_copy);
        let mongo_copy = info("g", "bbb");
        lock(&reg.inner.mongo_index).insert(mongo_copy.id.clone(), mongo_copy);
        let mut r = PluginRef { name: "g".into(), version: "0.1.0".into(), sha256: None, params: serde_json::Value::Null };
        assert_eq!(reg.lookup(&r).unwrap().sha256, "aaa", "unpinned: the directory first");
        r.sha256 = Some("BBB".into());
        assert_eq!(reg.lookup(&r).unwrap().source, ModuleSource::Mongo);
        r.sha256 = Some("ccc".into());
        assert_eq!(
            reg.lookup(&r).unwrap_err(),
            PluginError::HashMismatch { reference: "g@0.1.0".into(), expected: "ccc".into(), actual: "aaa".into() }
        );
        r.name = "missing".into();
        assert_eq!(reg.lookup(&r).unwrap_err(), PluginError::NotFound { reference: "missing@0.1.0".into() });
    }

    #[test]
    fn references_resolve_in_the_tenant_namespace() {
        let reg = PluginRegistry::new();
        let put = |name: &str, sha: &str, owner: Option<&str>, shared: bool, dir: bool| {
            let mut m = info(name, sha);
            m.owner = owner.map(str::to_string);
            m.shared = shared;
            let index = if dir {
                m.source = ModuleSource::Dir(format!("/p/{name}@0.1.0.wasm").into());
                &reg.inner.dir_index
            } else {
                &reg.inner.mongo_index
            };
            lock(index).insert(m.id.clone(), m);
        };
        put("ops", "o1", None, false, true);
        put("mine", "m1", Some("a"), false, true);
        put("lent", "l1", Some("a"), true, true);
        let r = |name: &str, sha: Option<&str>| PluginRef {
            name: name.into(),
            version: "0.1.0".into(),
            sha256: sha.map(str::to_string),
            params: serde_json::Value::Null,
        };
        assert_eq!(reg.lookup_for("a", &r("mine", None)).unwrap().sha256, "m1", "its own module");
        assert_eq!(reg.lookup_for("b", &r("ops", None)).unwrap().sha256, "o1", "an operator's module is shared");
        assert_eq!(reg.lookup_for("b", &r("lent", Some("l1"))).unwrap().sha256, "l1", "shared by an admin");
        // Another tenant's module and a missing one fail alike, and a pin quotes nothing foreign.
        let foreign = reg.lookup_for("b", &r("mine", Some("m1"))).unwrap_err();
        let missing = reg.lookup_for("b", &r("nothing", None)).unwrap_err();
        assert_eq!(foreign, PluginError::NotVisible { reference: "mine@0.1.0".into(), tenant: "b".into() });
        assert_eq!(
            foreign.to_string(),
            "no module `mine@0.1.0` owned by tenant `b` or shared; publish it for this tenant or ask an admin to share it"
        );
        assert_eq!(missing.to_string().replace("nothing", "mine"), foreign.to_string());
        assert_eq!(foreign.kind(), missing.kind());
        assert_eq!(reg.lookup(&r("mine", None)).unwrap().sha256, "m1", "operator tools see everything");
        // The same name@version in both sources: the tenant's own wins over a shared one, and
        // a pin picks among visible modules only.
        put("dup", "shared-one", None, false, true);
        put("dup", "a-own", Some("a"), false, false);
        assert_eq!(reg.lookup_for("a", &r("dup", None)).unwrap().sha256, "a-own");
        assert_eq!(reg.lookup_for("b", &r("dup", None)).unwrap().sha256, "shared-one");
        let err = reg.lookup_for("b", &r("dup", Some("a-own"))).unwrap_err();
        assert_eq!(err, PluginError::HashMismatch { reference: "dup@0.1.0".into(), expected: "a-own".into(), actual: "shared-one".into() });
    }

    #[test]
    fn ownership_changes_are_announced() {
        let old: Index = [info("a", "1")].into_iter().map(|m| (m.id.clone(), m)).collect();
        let mut new = old.clone();
        new.values_mut().for_each(|m| m.owner = Some("t".into()));
        assert_eq!(diff(&old, &new).len(), 1, "a new owner changes who may reference it");
        let mut shared = new.clone();
        shared.values_mut().for_each(|m| m.shared = true);
        assert_eq!(diff(&new, &shared).len(), 1, "so does the shared mark");
    }

    #[test]
    fn changes_name_the_references_they_affect() {
        let change = RegistryChange { changed: [ModuleId::new("g", "0.1.0").unwrap()].into() };
        let r = PluginRef { name: "g".into(), version: "0.1.0".into(), sha256: None, params: serde_json::Value::Null };
        assert!(change.affects(&r));
        assert!(!change.affects(&PluginRef { version: "0.2.0".into(), ..r }));
    }
}
