//! The MongoDB source for a fleet: a `plugins` collection of documents
//! `{name, version, sha256, module: BinData, size, published_at, owner?, shared?}`, unique on
//! `(name, version)`. `owner` is the tenant that published it through the admin API (absent:
//! an operator's module, shared); `shared: true` is an admin's mark sharing a tenant's module.
//! Polling reads metadata only; module bytes are fetched when a reference resolves.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::Collection;

use super::{Index, ModuleId, ModuleInfo, ModuleSource, check_publishable};
use crate::plugin::engine::sha256_hex;
use crate::plugin::error::PluginError;

fn db_err(what: &str, e: mongodb::error::Error) -> PluginError {
    PluginError::Registry(format!("MongoDB {what}: {e}"))
}

/// The index of every module document (without its bytes).
pub(super) async fn list(coll: &Collection<Document>) -> Result<Index, PluginError> {
    let mut cursor = coll.find(doc! {}).projection(doc! { "module": 0 }).await.map_err(|e| db_err("listing plugins", e))?;
    let mut index = Index::new();
    while let Some(d) = cursor.try_next().await.map_err(|e| db_err("listing plugins", e))? {
        match info_of(&d) {
            Ok(info) => {
                index.insert(info.id.clone(), info);
            }
            Err(e) => tracing::warn!(error = %e, "skipping a malformed plugin document"),
        }
    }
    Ok(index)
}

/// A module document's metadata, checked.
fn info_of(d: &Document) -> Result<ModuleInfo, PluginError> {
    let field =
        |k: &str| d.get_str(k).map_err(|_| PluginError::Registry(format!("plugin document {:?}: `{k}` must be a string", d.get("_id"))));
    let id = ModuleId::new(field("name")?, field("version")?)?;
    let sha256 = field("sha256")?.to_ascii_lowercase();
    let size = match d.get("size") {
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    };
    let modified = d.get_datetime("published_at").ok().map(|t| t.to_system_time());
    // An owner that is not a valid tenant id matches no tenant: fail closed.
    let owner = match d.get("owner") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(o)) if crate::config::validate::is_valid_id(o) => Some(o.clone()),
        Some(_) => Some("?".to_string()),
    };
    let shared = d.get_bool("shared").unwrap_or(false);
    Ok(ModuleInfo { id, sha256, size, modified, source: ModuleSource::Mongo, owner, shared })
}

/// The bytes of one module, checked against the sha256 its document declares.
pub(super) async fn fetch_module(coll: &Collection<Document>, id: &ModuleId) -> Result<Vec<u8>, PluginError> {
    let d = coll
        .find_one(doc! { "name": &id.name, "version": &id.version })
        .await
        .map_err(|e| db_err("fetching a plugin", e))?
        .ok_or_else(|| PluginError::NotFound { reference: id.to_string() })?;
    let declared = d.get_str("sha256").unwrap_or_default().to_ascii_lowercase();
    let bytes = match d.get("module") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => return Err(PluginError::Registry(format!("plugin document {id} has no BinData `module`"))),
    };
    let actual = sha256_hex(&bytes);
    if actual != declared {
        return Err(PluginError::HashMismatch { reference: id.to_string(), expected: declared, actual });
    }
    Ok(bytes)
}

/// Inserts or replaces a module document as an operator's (no owner, shared); pollers index it
/// within their interval.
pub async fn publish_to_mongo(coll: &Collection<Document>, name: &str, version: &str, bytes: &[u8]) -> Result<ModuleInfo, PluginError> {
    publish_to_mongo_as(coll, name, version, bytes, None).await
}

/// [`publish_to_mongo`] owned by `owner` (a tenant), recorded in the same write so that no
/// poll ever indexes a tenant's module without its owner (which would make it shared).
pub async fn publish_to_mongo_as(
    coll: &Collection<Document>,
    name: &str,
    version: &str,
    bytes: &[u8],
    owner: Option<&str>,
) -> Result<ModuleInfo, PluginError> {
    let id = check_publishable(name, version, bytes)?;
    let sha256 = sha256_hex(bytes);
    let now = bson::DateTime::now();
    let module = Binary { subtype: BinarySubtype::Generic, bytes: bytes.to_vec() };
    let mut set = doc! { "sha256": &sha256, "module": module, "size": bytes.len() as i64, "published_at": now };
    // A new module starts unshared: only an admin shares it, after it is published.
    let mut unset = doc! { "shared": "" };
    match owner {
        Some(o) => set.insert("owner", o),
        None => unset.insert("owner", ""),
    };
    let update = doc! { "$set": set, "$unset": unset };
    coll.update_one(doc! { "name": &id.name, "version": &id.version }, update)
        .upsert(true)
        .await
        .map_err(|e| db_err("publishing a plugin", e))?;
    tracing::info!(plugin = %id, %sha256, "published plugin module to MongoDB");
    Ok(ModuleInfo {
        id,
        sha256,
        size: bytes.len() as u64,
        modified: Some(now.to_system_time()),
        source: ModuleSource::Mongo,
        owner: owner.map(str::to_string),
        shared: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_become_module_infos() {
        let d =
            doc! { "name": "gravity", "version": "0.1.0", "sha256": "ABC", "size": 10_i64, "published_at": bson::DateTime::from_millis(5) };
        let info = info_of(&d).unwrap();
        assert_eq!(info.id.to_string(), "gravity@0.1.0");
        assert_eq!(info.sha256, "abc");
        assert_eq!(info.size, 10);
        assert!(info.modified.is_some());
        assert_eq!((info.owner, info.shared), (None, false), "no owner: an operator's module");
        let owned = info_of(&doc! { "name": "g", "version": "1", "sha256": "a", "owner": "acme", "shared": true }).unwrap();
        assert_eq!((owned.owner.as_deref(), owned.shared), (Some("acme"), true));
        let odd = info_of(&doc! { "name": "g", "version": "1", "sha256": "a", "owner": 5 }).unwrap();
        assert!(!odd.usable_by("acme") && !odd.is_shared(), "a malformed owner fails closed");
        assert!(info_of(&doc! { "name": "Bad Name", "version": "1", "sha256": "x" }).is_err());
        assert!(info_of(&doc! { "name": "ok", "version": "1" }).is_err());
    }
}
