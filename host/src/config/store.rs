//! Where scenario documents live, for the operator commands: a directory (the embedded default)
//! or MongoDB. Reads return raw documents; writes go through `config::edit` first.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::dir_store::read_dir_documents;
#[cfg(feature = "mongodb")]
use super::mongo::MongoScenarioStore;

/// A write based on a revision that is no longer the stored one: another writer got there
/// first. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "scenario {tenant}/{scenario} changed meanwhile: it is at revision {current}, this write was based on revision {based_on}; read it again and retry"
)]
pub struct RevisionConflict {
    pub tenant: String,
    pub scenario: String,
    /// The revision the write was based on (0: the scenario did not exist).
    pub based_on: i64,
    /// The stored revision now (0: none).
    pub current: i64,
}

/// Directory writes are checked and written under this lock, so two writers in one process
/// cannot both pass the revision check; [`lock_dir`] does the same across processes.
pub(super) static DIR_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An exclusive advisory lock on `<dir>/.history/write.lock`, held while a write is checked and
/// stored, so two processes (a host's admin API and a CLI, say) writing one scenarios
/// directory cannot both pass the revision check. Released when the file is dropped.
pub(super) fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let history = dir.join(".history");
    std::fs::create_dir_all(&history).with_context(|| format!("creating {}", history.display()))?;
    let path = history.join("write.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

fn revision_of(doc: Option<&Value>) -> i64 {
    doc.and_then(|d| d.get("revision")).and_then(Value::as_i64).unwrap_or(0)
}

/// Where scenario documents live (the CLI's `StoreArgs` decide which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Dir(PathBuf),
    Mongo(String),
}

pub enum ScenarioStore {
    Dir(PathBuf),
    #[cfg(feature = "mongodb")]
    Mongo(MongoScenarioStore),
}

fn ids(doc: &Value) -> Option<(&str, &str)> {
    Some((doc.get("tenant_id")?.as_str()?, doc.get("scenario_id")?.as_str()?))
}

impl ScenarioStore {
    /// The store at `source` (`database` for MongoDB).
    pub async fn open(source: &ConfigSource, database: &str) -> anyhow::Result<Self> {
        Ok(match source {
            #[cfg(feature = "mongodb")]
            ConfigSource::Mongo(url) => ScenarioStore::Mongo(MongoScenarioStore::connect(url, database).await?),
            #[cfg(not(feature = "mongodb"))]
            ConfigSource::Mongo(url) => {
                let _ = database;
                anyhow::bail!("cannot open MongoDB at {url}: {}", crate::config::mongo::NOT_BUILT)
            }
            ConfigSource::Dir(dir) => ScenarioStore::Dir(dir.clone()),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            ScenarioStore::Dir(d) => format!("directory {}", d.display()),
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(_) => "MongoDB".to_string(),
        }
    }

    pub async fn list(&self) -> anyhow::Result<Vec<Value>> {
        match self {
            ScenarioStore::Dir(d) => Ok(read_dir_documents(d)?.docs.into_iter().map(|(v, _)| v).collect()),
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.load_all().await,
        }
    }

    pub async fn get(&self, tenant: &str, scenario: &str) -> anyhow::Result<Option<Value>> {
        match self {
            ScenarioStore::Dir(_) => Ok(self.list().await?.into_iter().find(|d| ids(d) == Some((tenant, scenario)))),
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.get(tenant, scenario).await,
        }
    }

    /// Stores a complete, already validated document (replacing the scenario's previous one)
    /// and appends it to the scenario's revision history. With `based_on`, only if the stored
    /// revision is still that one (0: no document), else [`RevisionConflict`]: a
    /// read-modify-write never loses another writer's update.
    pub async fn put(&self, doc: &Value, based_on: Option<i64>) -> anyhow::Result<()> {
        let (tenant, scenario) = ids(doc).context("document has no tenant_id/scenario_id")?;
        let conflict =
            |current: i64, based_on: i64| RevisionConflict { tenant: tenant.into(), scenario: scenario.into(), based_on, current };
        match self {
            ScenarioStore::Dir(d) => {
                let _one_writer = DIR_WRITES.lock().await;
                let _one_process = lock_dir(d)?;
                if let Some(want) = based_on {
                    let current = revision_of(self.get(tenant, scenario).await?.as_ref());
                    if current != want {
                        return Err(conflict(current, want).into());
                    }
                }
                let history = history_dir(d, tenant, scenario)?;
                std::fs::create_dir_all(&history).with_context(|| format!("creating {}", history.display()))?;
                let revision = doc.get("revision").and_then(Value::as_i64).unwrap_or(0);
                write_atomically(&history.join(format!("{revision}.json")), doc)?;
                write_atomically(&self.dir_file(d, tenant, scenario)?, doc)
            }
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => match based_on {
                None => m.upsert(doc).await,
                Some(want) => {
                    if m.replace_if_revision(doc, want).await? {
                        Ok(())
                    } else {
                        let current = revision_of(m.get(tenant, scenario).await?.as_ref());
                        Err(conflict(current, want).into())
                    }
                }
            },
        }
    }

    /// Every stored revision of a scenario, oldest first.
    pub async fn history(&self, tenant: &str, scenario: &str) -> anyhow::Result<Vec<Value>> {
        match self {
            ScenarioStore::Dir(d) => {
                let mut docs = Vec::new();
                // The directory of this layout, then the one before it (`tenant__scenario`),
                // whose name two scenarios could share: only documents with these ids count.
                for dir in [history_dir(d, tenant, scenario)?, d.join(".history").join(format!("{tenant}__{scenario}"))] {
                    match read_dir_documents(&dir) {
                        Ok(read) => docs.extend(read.docs.into_iter().map(|(v, _)| v).filter(|v| ids(v) == Some((tenant, scenario)))),
                        Err(_) if !dir.exists() => {}
                        Err(e) => return Err(e),
                    }
                }
                docs.sort_by_key(|d: &Value| d.get("revision").and_then(Value::as_i64).unwrap_or(0));
                docs.dedup_by_key(|d| d.get("revision").and_then(Value::as_i64).unwrap_or(0));
                Ok(docs)
            }
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.history(tenant, scenario).await,
        }
    }

    /// The tenant's document (quotas), if any.
    pub async fn tenant(&self, tenant: &str) -> anyhow::Result<Option<Value>> {
        let docs = match self {
            ScenarioStore::Dir(d) => super::dir_store::read_tenant_documents(d),
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.tenants().await?,
        };
        Ok(docs.into_iter().find(|d| d.get("tenant_id").and_then(Value::as_str) == Some(tenant)))
    }

    /// Stores a tenant document (validate it with `config::tenant::parse_tenant` first).
    pub async fn put_tenant(&self, doc: &Value) -> anyhow::Result<()> {
        let tenant = doc.get("tenant_id").and_then(Value::as_str).context("tenant document has no tenant_id")?;
        match self {
            ScenarioStore::Dir(d) => {
                let dir = d.join("tenants");
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                write_atomically(&dir.join(format!("{tenant}.json")), doc)
            }
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.put_tenant(doc).await,
        }
    }

    pub async fn delete(&self, tenant: &str, scenario: &str) -> anyhow::Result<bool> {
        match self {
            ScenarioStore::Dir(d) => {
                let path = self.dir_file(d, tenant, scenario)?;
                if path.exists() {
                    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.delete(tenant, scenario).await,
        }
    }

    /// The file holding a scenario: the existing one, else `<tenant>.<scenario>.json` in the
    /// encoding of [`file_stem`].
    fn dir_file(&self, dir: &Path, tenant: &str, scenario: &str) -> anyhow::Result<PathBuf> {
        let stem = file_stem(tenant, scenario)?;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Ok(doc) = std::fs::read(&path).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice::<Value>(&b)?))
                && ids(&doc) == Some((tenant, scenario))
            {
                return Ok(path);
            }
        }
        Ok(dir.join(format!("{stem}.json")))
    }
}

/// The file name of a `(tenant, scenario)`, unambiguous and safe on case-insensitive file
/// systems: ids are `[A-Za-z0-9_-]`, so `.` separates them, and an upper-case letter is written
/// `^` and its lower case (`Shop/home` is `^shop.home`). Other ids are refused, so no id can
/// reach outside the directory.
fn file_stem(tenant: &str, scenario: &str) -> anyhow::Result<String> {
    let mut stem = String::with_capacity(tenant.len() + scenario.len() + 4);
    for (i, id) in [tenant, scenario].into_iter().enumerate() {
        anyhow::ensure!(super::validate::is_valid_id(id), "{id:?} is not a valid id ([A-Za-z0-9_-]{{1,64}})");
        if i == 1 {
            stem.push('.');
        }
        for c in id.chars() {
            if c.is_ascii_uppercase() {
                stem.push('^');
            }
            stem.push(c.to_ascii_lowercase());
        }
    }
    Ok(stem)
}

/// `<scenarios-dir>/.history/<file stem>/`: hidden, and not `*.json`, so the host that watches
/// the directory never reads it as a scenario.
fn history_dir(dir: &Path, tenant: &str, scenario: &str) -> anyhow::Result<PathBuf> {
    Ok(dir.join(".history").join(file_stem(tenant, scenario)?))
}

/// Writes through a temporary file of this writer's own (two writers never share one) and an
/// atomic rename.
pub(super) fn write_atomically(path: &Path, doc: &Value) -> anyhow::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(doc)?).with_context(|| format!("writing {}", tmp.display()))?;
    // Rename is atomic: the watcher never sees a half-written document.
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn dir_store_keeps_every_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = ScenarioStore::Dir(dir.path().to_path_buf());
        for r in 1..=3 {
            store.put(&json!({"tenant_id": "t", "scenario_id": "s", "revision": r}), None).await.unwrap();
        }
        let h = store.history("t", "s").await.unwrap();
        assert_eq!(h.iter().map(|d| d["revision"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(store.list().await.unwrap().len(), 1, "history is not read as scenarios");
        assert!(store.history("t", "other").await.unwrap().is_empty());
    }

    #[test]
    fn file_names_of_different_scenarios_never_collide() {
        let pairs = [("a", "b__c"), ("a__b", "c"), ("Shop", "home"), ("shop", "home"), ("shop", "Home"), ("a_", "_b")];
        let stems: std::collections::BTreeSet<String> = pairs.iter().map(|(t, s)| file_stem(t, s).unwrap().to_lowercase()).collect();
        assert_eq!(stems.len(), pairs.len(), "{stems:?}");
        assert_eq!(file_stem("Shop", "home").unwrap(), "^shop.home");
        for bad in ["../x", "a/b", "", "a.b"] {
            assert!(file_stem(bad, "s").is_err() && file_stem("t", bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn one_tenant_cannot_read_or_overwrite_another_tenants_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let store = ScenarioStore::Dir(dir.path().to_path_buf());
        store.put(&json!({"tenant_id": "a", "scenario_id": "b__c", "revision": 1, "owner": "a"}), None).await.unwrap();
        store.put(&json!({"tenant_id": "a__b", "scenario_id": "c", "revision": 1, "owner": "a__b"}), None).await.unwrap();
        assert_eq!(store.list().await.unwrap().len(), 2);
        assert_eq!(store.get("a", "b__c").await.unwrap().unwrap()["owner"], "a");
        for (t, s) in [("a", "b__c"), ("a__b", "c")] {
            let h = store.history(t, s).await.unwrap();
            assert_eq!(h.len(), 1);
            assert_eq!(h[0]["owner"], t, "history of {t}/{s}");
        }
        // A history written under the old shared name holds only what its ids say.
        let legacy = dir.path().join(".history").join("a__b__c");
        std::fs::create_dir_all(&legacy).unwrap();
        std::fs::write(legacy.join("7.json"), r#"{"tenant_id":"a__b","scenario_id":"c","revision":7}"#).unwrap();
        assert_eq!(store.history("a", "b__c").await.unwrap().len(), 1);
        assert_eq!(store.history("a__b", "c").await.unwrap().len(), 2);
        assert!(store.put(&json!({"tenant_id": "../x", "scenario_id": "s"}), None).await.is_err());
    }

    #[tokio::test]
    async fn a_write_based_on_an_old_revision_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = ScenarioStore::Dir(dir.path().to_path_buf());
        let doc = |r: i64| json!({"tenant_id": "t", "scenario_id": "s", "revision": r});
        store.put(&doc(1), Some(0)).await.unwrap();
        let err = store.put(&doc(1), Some(0)).await.unwrap_err();
        assert_eq!(err.downcast_ref::<RevisionConflict>().map(|c| (c.based_on, c.current)), Some((0, 1)), "created twice");
        store.put(&doc(2), Some(1)).await.unwrap();
        // Two editors both read revision 1: the second write is refused, not lost over.
        let err = store.put(&doc(2), Some(1)).await.unwrap_err();
        assert_eq!(err.downcast_ref::<RevisionConflict>().map(|c| c.current), Some(2));
        assert_eq!(store.history("t", "s").await.unwrap().len(), 2);
    }
}
