//! The MongoDB plugin registry on the local stack (FerretDB): publish, poll, resolve, prepare,
//! and refuse a module whose bytes do not match its declared hash. Uses a database of its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bson::doc;
use bson::spec::BinarySubtype;
use rtscore::config::{PluginRef, ScenarioKey};
use rtscore::plugin::{
    ModuleId, ModuleSource, PluginEngine, PluginError, PluginLoader, PluginRegistry, RegistryChange, publish_to_mongo, publish_to_mongo_as,
    sha256_hex,
};
use rtscore_testkit::Stack;
use rtscore_testkit::plugins::{module, simple_batch};

async fn wait_for(rx: &mut tokio::sync::broadcast::Receiver<RegistryChange>, id: &ModuleId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(change)) if change.changed.contains(id) => return,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("change channel: {e}"),
            Err(_) => panic!("no change announced for {id} within 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_registry_publishes_polls_and_resolves() {
    let stack = Stack::ensure();
    let client = mongodb::Client::with_uri_str(&stack.mongodb_url).await.expect("MongoDB client");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let db = client.database(&format!("rtscore_plugins_{}_{nanos}", std::process::id()));
    let coll = db.collection::<bson::Document>("plugins");

    let registry = PluginRegistry::new();
    registry.poll_mongo(coll.clone(), Duration::from_millis(200)).await.expect("first poll");
    assert!(registry.modules().is_empty());
    let mut rx = registry.subscribe();

    let bytes = module("gravity");
    let sha = sha256_hex(&bytes);
    let published = publish_to_mongo(&coll, "gravity", "0.1.0", &bytes).await.expect("publish");
    assert_eq!(published.sha256, sha);
    let id = ModuleId::new("gravity", "0.1.0").unwrap();
    wait_for(&mut rx, &id).await;
    let listed = registry.modules();
    assert_eq!((listed.len(), &listed[0].sha256, &listed[0].source), (1, &sha, &ModuleSource::Mongo));

    let r = PluginRef { name: "gravity".into(), version: "0.1.0".into(), sha256: Some(sha.clone()), params: serde_json::json!({}) };
    let resolved = registry.resolve(&r).await.expect("resolve");
    assert_eq!(&*resolved.bytes, bytes.as_slice());

    let engine = PluginEngine::new(Default::default(), Default::default()).expect("engine");
    let manager = PluginLoader::new(engine, registry.clone());
    let mut inst = manager.prepare(&ScenarioKey::new("t", "s"), &r).await.expect("prepare");
    let mut out = Vec::new();
    inst.score(&simple_batch(3), &mut out).expect("score");
    assert_eq!(out.len(), 3);

    // Bytes that do not match the declared sha256 are refused on resolve.
    let module_bin = bson::Binary { subtype: BinarySubtype::Generic, bytes: module("trend") };
    coll.update_one(doc! { "name": "gravity", "version": "0.1.0" }, doc! { "$set": { "module": module_bin } }).await.expect("tamper");
    let err = registry.resolve(&r).await.unwrap_err();
    assert!(matches!(&err, PluginError::HashMismatch { expected, .. } if *expected == sha), "{err}");

    // A tenant's module is indexed with its owner: other tenants' scenarios cannot resolve it
    // until an admin marks it shared, which the next poll announces.
    let owned = ModuleId::new("owned", "1.0.0").unwrap();
    publish_to_mongo_as(&coll, "owned", "1.0.0", &bytes, Some("acme")).await.expect("publish owned");
    wait_for(&mut rx, &owned).await;
    let r = PluginRef { name: "owned".into(), version: "1.0.0".into(), sha256: Some(sha.clone()), params: serde_json::json!({}) };
    assert!(manager.prepare(&ScenarioKey::new("acme", "s"), &r).await.is_ok(), "the owner resolves it");
    let err = manager.prepare(&ScenarioKey::new("rival", "s"), &r).await.unwrap_err();
    assert_eq!(err, PluginError::NotVisible { reference: "owned@1.0.0".into(), tenant: "rival".into() });
    coll.update_one(doc! { "name": "owned", "version": "1.0.0" }, doc! { "$set": { "shared": true } }).await.expect("share");
    wait_for(&mut rx, &owned).await;
    assert!(manager.prepare(&ScenarioKey::new("rival", "s"), &r).await.is_ok(), "shared: every tenant resolves it");

    db.drop().await.expect("drop test database");
}
