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

    /// Stores a complete, already validated document (replacing the scenario's previous one).
    pub async fn put(&self, doc: &Value) -> anyhow::Result<()> {
        let (tenant, scenario) = ids(doc).context("document has no tenant_id/scenario_id")?;
        match self {
            ScenarioStore::Dir(d) => {
                let path = self.dir_file(d, tenant, scenario)?;
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, serde_json::to_vec_pretty(doc)?).with_context(|| format!("writing {}", tmp.display()))?;
                // Rename is atomic: the watcher never sees a half-written document.
                std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
                Ok(())
            }
            ScenarioStore::Mongo(m) => m.upsert(doc).await,
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
