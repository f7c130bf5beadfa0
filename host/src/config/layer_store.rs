//! Where defaults layer documents (`config::layers`) live, versioned like scenarios:
//!
//! - a scenarios directory: `defaults/platform.json`, `defaults/tenants/<tenant>.json`,
//!   `defaults/types/<tenant>.<scenario_type>.json` (ids encoded as scenario file names are:
//!   an upper-case letter is `^` and its lower case), every revision kept in
//!   `.history/defaults/<key>/<revision>.json`. The host reads `defaults/` with the scenarios and
//!   never takes it for scenario files (only the directory's own `*.json` are scenarios);
//! - MongoDB: collection `defaults`, one document per layer (unique `key`: `platform`,
//!   `tenant:<t>`, `type:<t>:<scenario_type>`), every revision appended to `defaults_history`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::dir_store::read_dir_documents;
use super::layers::LayerId;
use super::store::{DIR_WRITES, RevisionConflict, ScenarioStore, lock_dir, write_atomically};

/// `id` as a file-name part, safe on case-insensitive file systems (ids are checked by
/// [`LayerId::new`]: `[A-Za-z0-9_-]`).
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 2);
    for c in id.chars() {
        if c.is_ascii_uppercase() {
            out.push('^');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The file of a layer under `<dir>/defaults/`, and its history directory.
fn layer_paths(dir: &Path, id: &LayerId) -> (PathBuf, PathBuf) {
    let defaults = dir.join("defaults");
    let (file, stem) = match id {
        LayerId::Platform => (defaults.join("platform.json"), "platform".to_string()),
        LayerId::Tenant(t) => (defaults.join("tenants").join(format!("{}.json", encode(t))), format!("tenant.{}", encode(t))),
        LayerId::Type { tenant, scenario_type } => {
            let stem = format!("{}.{}", encode(tenant), encode(scenario_type));
            (defaults.join("types").join(format!("{stem}.json")), format!("type.{stem}"))
        }
    };
    (file, dir.join(".history").join("defaults").join(stem))
}

/// The layer documents of a scenarios directory (`(document, file)`), and whether every file
/// could be read: when one could not, the reader must not take a missing layer as deleted.
pub fn read_dir_layers(dir: &Path) -> (Vec<(Value, String)>, bool) {
    let defaults = dir.join("defaults");
    let mut docs = Vec::new();
    let mut complete = true;
    let platform = defaults.join("platform.json");
    if platform.exists() {
        match std::fs::read(&platform).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
            Ok(v) => docs.push((v, platform.display().to_string())),
            Err(e) => {
                tracing::error!(file = %platform.display(), error = %e, "defaults layer file is not a JSON document; its last valid version stays");
                complete = false;
            }
        }
    }
    for sub in ["tenants", "types"] {
        let d = defaults.join(sub);
        if !d.is_dir() {
            continue;
        }
        match read_dir_documents(&d) {
            Ok(read) => {
                for (file, e) in &read.errors {
                    tracing::error!(%file, error = %e, "defaults layer file is not a JSON document; its last valid version stays");
                }
                complete &= read.errors.is_empty();
                docs.extend(read.docs);
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read defaults layers");
                complete = false;
            }
        }
    }
    (docs, complete)
}

fn revision_of(doc: Option<&Value>) -> i64 {
    doc.and_then(|d| d.get("revision")).and_then(Value::as_i64).unwrap_or(0)
}

fn conflict(id: &LayerId, based_on: i64, current: i64) -> anyhow::Error {
    RevisionConflict { tenant: "defaults".into(), scenario: id.key(), based_on, current }.into()
}

impl ScenarioStore {
    /// Every stored layer document.
    pub async fn list_layers(&self) -> anyhow::Result<Vec<Value>> {
        match self {
            ScenarioStore::Dir(d) => Ok(read_dir_layers(d).0.into_iter().map(|(v, _)| v).collect()),
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.layers().await,
        }
    }

    /// Every stored layer that is valid on its own, as the hosts hold them.
    pub async fn layer_set(&self) -> anyhow::Result<std::collections::BTreeMap<LayerId, Value>> {
        Ok(self.list_layers().await?.into_iter().filter_map(|d| Some((super::layers::parse_layer(&d).ok()?, d))).collect())
    }

    /// The stored document of one layer, if any.
    pub async fn get_layer(&self, id: &LayerId) -> anyhow::Result<Option<Value>> {
        match self {
            ScenarioStore::Dir(d) => {
                let (file, _) = layer_paths(d, id);
                if !file.exists() {
                    return Ok(None);
                }
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{} is not a JSON document", file.display()))?))
            }
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.layer(&id.key()).await,
        }
    }

    /// Stores a complete, already validated layer document over revision `based_on` (0: none
    /// stored), else [`RevisionConflict`]; appends it to the layer's history.
    pub async fn put_layer(&self, id: &LayerId, doc: &Value, based_on: i64) -> anyhow::Result<()> {
        match self {
            ScenarioStore::Dir(d) => {
                let _one_writer = DIR_WRITES.lock().await;
                let _one_process = lock_dir(d)?;
                let current = revision_of(self.get_layer(id).await?.as_ref());
                if current != based_on {
                    return Err(conflict(id, based_on, current));
                }
                let (file, history) = layer_paths(d, id);
                for dir in [file.parent(), Some(history.as_path())].into_iter().flatten() {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                write_atomically(&history.join(format!("{}.json", revision_of(Some(doc)))), doc)?;
                write_atomically(&file, doc)
            }
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => {
                if m.put_layer_if_revision(&id.key(), doc, based_on).await? {
                    Ok(())
                } else {
                    Err(conflict(id, based_on, revision_of(m.layer(&id.key()).await?.as_ref())))
                }
            }
        }
    }

    /// Every stored revision of a layer, oldest first.
    pub async fn layer_history(&self, id: &LayerId) -> anyhow::Result<Vec<Value>> {
        match self {
            ScenarioStore::Dir(d) => {
                let (_, history) = layer_paths(d, id);
                if !history.is_dir() {
                    return Ok(Vec::new());
                }
                let mut docs: Vec<Value> = read_dir_documents(&history)?.docs.into_iter().map(|(v, _)| v).collect();
                docs.sort_by_key(|d| revision_of(Some(d)));
                Ok(docs)
            }
            #[cfg(feature = "mongodb")]
            ScenarioStore::Mongo(m) => m.layer_history(&id.key()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn dir_layers_are_versioned_and_never_read_as_scenarios() {
        let dir = tempfile::tempdir().unwrap();
        let store = ScenarioStore::Dir(dir.path().to_path_buf());
        let ids =
            [LayerId::Platform, LayerId::Tenant("Shop".into()), LayerId::Type { tenant: "shop".into(), scenario_type: "feed".into() }];
        for id in &ids {
            for r in 1..=2 {
                let mut doc = id.empty_document();
                doc["revision"] = r.into();
                store.put_layer(id, &doc, r - 1).await.unwrap();
            }
            assert_eq!(store.get_layer(id).await.unwrap().unwrap()["revision"], 2);
            assert_eq!(store.layer_history(id).await.unwrap().len(), 2);
        }
        // Shop and shop are different tenants, even on a case-insensitive file system.
        assert_eq!(store.get_layer(&LayerId::Tenant("shop".into())).await.unwrap(), None);
        let err = store.put_layer(&LayerId::Platform, &json!({"layer": "platform", "revision": 3}), 1).await.unwrap_err();
        assert!(err.downcast_ref::<RevisionConflict>().is_some(), "{err}");
        assert_eq!(store.list_layers().await.unwrap().len(), 3);
        assert!(store.list().await.unwrap().is_empty(), "layers are not scenarios");
        // An unreadable file: the read is incomplete, so no layer is taken as deleted.
        std::fs::write(dir.path().join("defaults/tenants/broken.json"), "{").unwrap();
        let (docs, complete) = read_dir_layers(dir.path());
        assert_eq!((docs.len(), complete), (3, false));
    }
}
