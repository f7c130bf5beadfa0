//! Compiled plugin components kept on disk across restarts (`--plugin-cache-dir`).
//!
//! A component made by an interpreter toolchain (componentize-py, componentize-js) carries the
//! whole interpreter and takes seconds to compile; a host that restarts, or a second host
//! process on the machine, loads the compiled code from here in milliseconds instead.
//!
//! An entry is `<module sha256>-<engine fingerprint>.cwasm`: the module's hash (what scenario
//! references pin) and a digest of wasmtime's version and the engine's compilation settings
//! ([`wasmtime::Engine::precompile_compatibility_hash`]), so another wasmtime or another
//! configuration never reads it. Its bytes are a magic line, the sha256 of the serialized
//! component, then the serialized component ([`wasmtime::component::Component::serialize`]).
//!
//! Trust. Deserializing is `unsafe` in wasmtime: the bytes are machine code that runs as is,
//! so whoever can write an entry can run code in the host. The argument that only this host
//! writes them:
//! - the directory is the host's own: [`DiskCache::open`] creates it with mode 0700 and refuses
//!   (the cache is then off, with a warning) a directory that another user owns or that its
//!   group or others may write. It must never be a directory a tenant can write to (the plugins
//!   directory, an upload area): operators choose it, tenants cannot;
//! - every entry is written by [`DiskCache::store`] from a component this process compiled from
//!   module bytes whose sha256 is the entry's name (tenant bytes go through the compiler, never
//!   into the file as they are), to a temporary file renamed into place;
//! - on load the stored sha256 of the serialized bytes is checked before they are handed to
//!   wasmtime, which also checks its own header (version, target, settings). This catches a
//!   torn or truncated write and a corrupted disk, not an attacker: one who can write the
//!   directory can write a matching hash too, which is why the first point is the guarantee.
//!
//! Any entry that fails a check is removed and the module is compiled again. The directory is
//! bounded ([`DEFAULT_MAX_BYTES`]): past it the least recently used entries are removed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry (the format's version is in it).
const MAGIC: &[u8; 16] = b"rtscore-cwasm-1\n";

/// Default bound on the entries' total size: a compiled interpreter component is some tens of
/// MB, a Rust one well under one.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// The default directory: `$XDG_CACHE_HOME/rtscore/compiled-plugins`, else
/// `$HOME/.cache/rtscore/compiled-plugins`; `None` without either.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("rtscore").join("compiled-plugins"))
}

/// An open, checked cache directory for one engine configuration.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    fingerprint: String,
    max_bytes: u64,
}

/// Feeds `Hash` into sha256, for a fingerprint that is the same in every process.
struct ShaHasher(Sha256);

impl std::hash::Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

/// What wasmtime requires of serialized code to load it in `engine`, as 16 hex digits.
pub fn engine_fingerprint(engine: &Engine) -> String {
    use std::hash::Hash;
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..8])
}

impl DiskCache {
    /// Opens (creating it with mode 0700) the cache directory for `engine`. Refuses a directory
    /// owned by another user, or that its group or others may write: see the module's trust
    /// argument.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if !dir.exists() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory (a symlink is refused too)", dir.display()));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "{} may be written by its group or others (mode {:o}): compiled code loaded from it runs in the host",
                dir.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        // Our uid is the owner of a file we create (no libc call needed for it).
        let probe = dir.join(format!(".owner-probe-{}", std::process::id()));
        let ours = fs::File::create(&probe).and_then(|f| f.metadata()).map(|m| m.uid());
        let _ = fs::remove_file(&probe);
        let ours = ours.map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
        if meta.uid() != ours {
            return Err(format!("{} belongs to uid {}, not to this host's uid {ours}", dir.display(), meta.uid()));
        }
        Ok(Self { dir: dir.to_path_buf(), fingerprint: engine_fingerprint(engine), max_bytes: DEFAULT_MAX_BYTES })
    }

    /// The same cache bounded to `max_bytes` of entries.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry of module `sha256` for this engine.
    pub fn entry_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.fingerprint))
    }

    /// Holds the entry of module `sha256` for this process until the returned file is dropped:
    /// a second compile of the module, in this process or another host's, waits and then reads
    /// the entry instead of compiling the module again (two hosts starting together on one
    /// machine compile an interpreter component once). `None` when the lock cannot be taken.
    pub fn lock(&self, sha256: &str) -> Option<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(format!(".{sha256}-{}.lock", self.fingerprint));
        let file = fs::File::options().create(true).truncate(false).write(true).mode(0o600).open(&path).ok()?;
        file.lock().ok()?;
        Some(file)
    }

    /// The compiled component of module `sha256`, if an intact entry holds it. A damaged or
    /// incompatible entry is removed (and `None` returned: the caller compiles).
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.entry_path(sha256);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a compiled plugin from the disk cache");
                return None;
            }
        };
        let started = Instant::now();
        let payload = match verify(&bytes) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "removing a damaged compiled plugin from the disk cache");
                let _ = fs::remove_file(&path);
                return None;
            }
        };
        // SAFETY: wasmtime runs deserialized bytes as machine code without validating them. These
        // were written by `store` of a host with this engine configuration (the name's
        // fingerprint), from a component it compiled itself, into a directory only the host's
        // user may write (checked by `open`), and their sha256 was just checked (`verify`). See
        // the module's documentation for the whole argument. The workspace's second `unsafe`
        // site, beside plugin/instance.rs.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, payload) };
        match loaded {
            Ok(c) => {
                // Touched, so eviction removes the least recently used entries first.
                let _ = fs::File::options().append(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                tracing::debug!(%sha256, ms = started.elapsed().as_millis() as u64, "compiled plugin read from the disk cache");
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "removing a compiled plugin wasmtime refuses to load");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes the compiled `component` of module `sha256` (errors are logged: the cache only
    /// saves time), then keeps the directory under its bound.
    pub fn store(&self, sha256: &str, component: &Component) {
        if let Err(e) = self.try_store(sha256, component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write a compiled plugin to the disk cache");
        }
        self.evict();
    }

    fn try_store(&self, sha256: &str, component: &Component) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let payload = component.serialize().map_err(|e| anyhow::anyhow!("serializing: {e:#}"))?;
        let path = self.entry_path(sha256);
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{sha256}.{}.{n}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::options().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&Sha256::digest(&payload))?;
            f.write_all(&payload)?;
            f.sync_all()?;
            // Atomic: a reader sees the whole entry or none; two hosts storing the same entry
            // write the same code.
            fs::rename(&tmp, &path)
        };
        write().inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        tracing::debug!(%sha256, bytes = payload.len(), path = %path.display(), "compiled plugin written to the disk cache");
        Ok(())
    }

    /// Removes the least recently used entries until the rest fit in the bound.
    fn evict(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else { return };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.max_bytes {
            return;
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), bytes = len, "evicted a compiled plugin from the disk cache");
                total -= len;
            }
        }
    }
}

/// The serialized component of an entry, once its magic and hash are checked.
fn verify(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not an rtscore compiled-plugin entry")?;
    if rest.len() < 32 {
        return Err("truncated");
    }
    let (hash, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != hash {
        return Err("the serialized bytes do not match their sha256");
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        Engine::new(&c).unwrap()
    }

    /// The smallest component there is.
    fn component(engine: &Engine) -> Component {
        Component::new(engine, b"\0asm\x0d\0\x01\0").unwrap()
    }

    #[test]
    fn an_entry_round_trips_and_a_damaged_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = DiskCache::open(&dir.path().join("c"), &engine).unwrap();
        assert!(cache.load(&engine, "ab").is_none());
        cache.store("ab", &component(&engine));
        assert!(cache.load(&engine, "ab").is_some());
        // One flipped byte of the code: refused before wasmtime sees it, and removed.
        let path = cache.entry_path("ab");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(cache.load(&engine, "ab").is_none());
        assert!(!path.exists());
        fs::write(&path, b"short").unwrap();
        assert!(cache.load(&engine, "ab").is_none());
        assert!(!path.exists());
    }

    #[test]
    fn another_engine_configuration_has_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let plain = engine();
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true).consume_fuel(true);
        let fuel = Engine::new(&c).unwrap();
        assert_ne!(engine_fingerprint(&plain), engine_fingerprint(&fuel));
        assert_eq!(engine_fingerprint(&plain), engine_fingerprint(&engine()), "stable across engines of one configuration");
        let a = DiskCache::open(dir.path(), &plain).unwrap();
        let b = DiskCache::open(dir.path(), &fuel).unwrap();
        a.store("ab", &component(&plain));
        assert!(b.load(&fuel, "ab").is_none());
        assert!(a.load(&plain, "ab").is_some());
    }

    #[test]
    fn a_second_compile_of_a_module_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = std::sync::Arc::new(DiskCache::open(dir.path(), &engine).unwrap());
        let held = cache.lock("ab").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let _g = cache.lock("ab");
                tx.send(()).unwrap();
            })
        };
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "waits while the entry is held");
        assert!(cache.lock("cd").is_some(), "another module's entry is free");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = DiskCache::open(&open, &engine()).unwrap_err();
        assert!(err.contains("group or others"), "{err}");
        let made = dir.path().join("made/here");
        DiskCache::open(&made, &engine()).unwrap();
        assert_eq!(fs::metadata(&made).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn the_least_recently_used_entries_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let one = {
            let c = DiskCache::open(dir.path(), &engine).unwrap();
            c.store("x", &component(&engine));
            fs::metadata(c.entry_path("x")).unwrap().len()
        };
        let cache = DiskCache::open(dir.path(), &engine).unwrap().with_max_bytes(2 * one);
        cache.store("a", &component(&engine));
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        for k in ["x", "a"] {
            fs::File::options().append(true).open(cache.entry_path(k)).unwrap().set_modified(old).unwrap();
        }
        assert!(cache.load(&engine, "x").is_some(), "touches x");
        cache.store("b", &component(&engine));
        assert!(!cache.entry_path("a").exists(), "a was the least recently used");
        assert!(cache.entry_path("x").exists() && cache.entry_path("b").exists());
    }
}
