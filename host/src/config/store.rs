//! Where scenario documents live, for the operator commands: a directory (the embedded default)
//! or MongoDB. Reads return raw documents; writes go through `config::edit` first.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::dir_store::read_dir_documents;
use super::mongo::MongoScenarioStore;

pub enum ScenarioStore {
    Dir(PathBuf),
    Mongo(MongoScenarioStore),
}

fn ids(doc: &Value) -> Option<(&str, &str)> {
    Some((doc.get("tenant_id")?.as_str()?, doc.get("scenario_id")?.as_str()?))
}

impl ScenarioStore {
    pub async fn open(mongodb_url: Option<&str>, database: &str, dir: &Path) -> anyhow::Result<Self> {
        Ok(match mongodb_url {
            Some(url) => ScenarioStore::Mongo(MongoScenarioStore::connect(url, database).await?),
            None => ScenarioStore::Dir(dir.to_path_buf()),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            ScenarioStore::Dir(d) => format!("directory {}", d.display()),
            ScenarioStore::Mongo(_) => "MongoDB".to_string(),
        }
    }

    pub async fn list(&self) -> anyhow::Result<Vec<Value>> {
        match self {
            ScenarioStore::Dir(d) => Ok(read_dir_documents(d)?.docs.into_iter().map(|(v, _)| v).collect()),
            ScenarioStore::Mongo(m) => m.load_all().await,
        }
    }

    pub async fn get(&self, tenant: &str, scenario: &str) -> anyhow::Result<Option<Value>> {
        match self {
            ScenarioStore::Dir(_) => Ok(self.list().await?.into_iter().find(|d| ids(d) == Some((tenant, scenario)))),
            ScenarioStore::Mongo(m) => m.get(tenant, scenario).await,
        }
    }

    /// Stores a complete, already validated document (replacing the scenario's previous one)
    /// and appends it to the scenario's revision history.
    pub async fn put(&self, doc: &Value) -> anyhow::Result<()> {
        let (tenant, scenario) = ids(doc).context("document has no tenant_id/scenario_id")?;
        match self {
            ScenarioStore::Dir(d) => {
                let history = history_dir(d, tenant, scenario);
                std::fs::create_dir_all(&history).with_context(|| format!("creating {}", history.display()))?;
                let revision = doc.get("revision").and_then(Value::as_i64).unwrap_or(0);
                write_atomically(&history.join(format!("{revision}.json")), doc)?;
                write_atomically(&self.dir_file(d, tenant, scenario)?, doc)
            }
            ScenarioStore::Mongo(m) => m.upsert(doc).await,
        }
    }

    /// Every stored revision of a scenario, oldest first.
    pub async fn history(&self, tenant: &str, scenario: &str) -> anyhow::Result<Vec<Value>> {
        match self {
            ScenarioStore::Dir(d) => {
                let dir = history_dir(d, tenant, scenario);
                let mut docs = match read_dir_documents(&dir) {
                    Ok(read) => read.docs.into_iter().map(|(v, _)| v).collect(),
                    Err(_) if !dir.exists() => Vec::new(),
                    Err(e) => return Err(e),
                };
                docs.sort_by_key(|d: &Value| d.get("revision").and_then(Value::as_i64).unwrap_or(0));
                Ok(docs)
            }
            ScenarioStore::Mongo(m) => m.history(tenant, scenario).await,
        }
    }

    /// The tenant's document (quotas), if any.
    pub async fn tenant(&self, tenant: &str) -> anyhow::Result<Option<Value>> {
        let docs = match self {
            ScenarioStore::Dir(d) => super::dir_store::read_tenant_documents(d),
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
            ScenarioStore::Mongo(m) => m.delete(tenant, scenario).await,
        }
    }

    /// The file holding a scenario: the existing one, else `<tenant>__<scenario>.json`.
    fn dir_file(&self, dir: &Path, tenant: &str, scenario: &str) -> anyhow::Result<PathBuf> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Ok(doc) = std::fs::read(&path).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice::<Value>(&b)?))
                && ids(&doc) == Some((tenant, scenario))
            {
                return Ok(path);
            }
        }
        Ok(dir.join(format!("{tenant}__{scenario}.json")))
    }
}

/// `<scenarios-dir>/.history/<tenant>__<scenario>/`: hidden, and not `*.json`, so the host that
/// watches the directory never reads it as a scenario.
fn history_dir(dir: &Path, tenant: &str, scenario: &str) -> PathBuf {
    dir.join(".history").join(format!("{tenant}__{scenario}"))
}

fn write_atomically(path: &Path, doc: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
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
            store.put(&json!({"tenant_id": "t", "scenario_id": "s", "revision": r})).await.unwrap();
        }
        let h = store.history("t", "s").await.unwrap();
        assert_eq!(h.iter().map(|d| d["revision"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(store.list().await.unwrap().len(), 1, "history is not read as scenarios");
        assert!(store.history("t", "other").await.unwrap().is_empty());
    }
}
