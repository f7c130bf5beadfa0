//! MongoDB scenario store (collection `scenarios`, unique on `(tenant_id, scenario_id)`).
//! Documents cross this boundary as JSON: `_id` is dropped and `updated_at` becomes epoch ms.
//! FerretDB v1 (the local stack) speaks the same protocol; it has no change streams, so the
//! runtime polls `changed_since` on the `updated_at` index.

use std::time::Duration;

use anyhow::Context;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use serde_json::Value;

#[derive(Clone)]
pub struct MongoScenarioStore {
    scenarios: Collection<Document>,
    /// Every stored revision, append-only (`scenario history`, `scenario rollback`).
    history: Collection<Document>,
    /// Tenant documents (quotas), one per tenant.
    tenants: Collection<Document>,
    plugins: Collection<Document>,
    /// Defaults layer documents (`config::layers`), unique on `key`, and their history.
    defaults: Collection<Document>,
    defaults_history: Collection<Document>,
    url: String,
}

fn to_json(mut d: Document) -> Value {
    d.remove("_id");
    if let Some(Bson::DateTime(t)) = d.get("updated_at") {
        let ms = t.timestamp_millis();
        d.insert("updated_at", ms);
    }
    Bson::Document(d).into_relaxed_extjson()
}

fn with_id(d: Document) -> (Value, String) {
    let id = match d.get("_id") {
        Some(Bson::ObjectId(o)) => o.to_hex(),
        Some(other) => other.to_string(),
        None => "?".to_string(),
    };
    (to_json(d), id)
}

impl MongoScenarioStore {
    /// Connects, checks the server answers, and ensures the indexes. Fails within a few seconds
    /// when the server is down, naming the URL.
    pub async fn connect(url: &str, database: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, database, true).await
    }

    /// Like [`Self::connect`]; with `create_indexes` false the host never writes to the
    /// platform's `scenarios` collection (a read-only user). Index creation is best effort
    /// either way: without the indexes polling scans the collection, which is correct, only
    /// slower on a large one.
    pub async fn connect_with(url: &str, database: &str, create_indexes: bool) -> anyhow::Result<Self> {
        let mut opts = ClientOptions::parse(url).await.with_context(|| format!("invalid --mongodb-url {url}"))?;
        opts.server_selection_timeout = Some(Duration::from_secs(3));
        opts.connect_timeout = Some(Duration::from_secs(3));
        opts.app_name = Some("rtscore".into());
        let client = Client::with_options(opts).with_context(|| format!("invalid MongoDB options for {url}"))?;
        let db = client.database(database);
        db.run_command(doc! {"ping": 1}).await.with_context(|| format!("MongoDB at {url} is not reachable"))?;
        let scenarios = db.collection::<Document>("scenarios");
        let unique = IndexModel::builder()
            .keys(doc! {"tenant_id": 1, "scenario_id": 1})
            .options(IndexOptions::builder().unique(true).name("tenant_scenario".to_string()).build())
            .build();
        let by_time = IndexModel::builder()
            .keys(doc! {"updated_at": 1})
            .options(IndexOptions::builder().name("updated_at".to_string()).build())
            .build();
        // FerretDB v1.24 panics on a createIndexes whose indexes already exist: create only the
        // missing ones, one per call.
        let existing = if create_indexes { scenarios.list_index_names().await.unwrap_or_default() } else { Vec::new() };
        for index in [unique, by_time].into_iter().filter(|_| create_indexes) {
            let name = index.options.as_ref().and_then(|o| o.name.clone()).unwrap_or_default();
            if existing.contains(&name) {
                continue;
            }
            // A user that may only read gets "unauthorized": run without the index rather than
            // retrying a write it will never be allowed.
            if let Err(e) = scenarios.create_index(index).await {
                tracing::warn!(index = %name, error = %e, "cannot create the scenarios index (a read-only user?); continuing without it (--mongodb-create-indexes false silences this)");
            }
        }
        let defaults = db.collection::<Document>("defaults");
        ensure_layer_index(&defaults).await?;
        Ok(Self {
            scenarios,
            history: db.collection::<Document>("scenario_history"),
            tenants: db.collection::<Document>("tenants"),
            plugins: db.collection::<Document>("plugins"),
            defaults,
            defaults_history: db.collection::<Document>("defaults_history"),
            url: url.to_string(),
        })
    }

    /// Opens a change stream on `scenarios` and sends `()` for every change, until the stream
    /// ends. Fails at once when the server offers no change streams (FerretDB, a standalone
    /// mongod): the caller then relies on polling alone.
    pub async fn watch_changes(&self, tx: tokio::sync::mpsc::Sender<()>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut stream = self.scenarios.watch().await.context("change streams are not available on this server")?;
        Ok(tokio::spawn(async move {
            loop {
                match stream.try_next().await {
                    Ok(Some(_)) => {
                        if tx.send(()).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "scenario change stream ended; polling continues");
                        break;
                    }
                }
            }
        }))
    }

    /// The fleet's plugin module collection in the same database.
    pub fn plugins(&self) -> Collection<Document> {
        self.plugins.clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every scenario document, active or not.
    pub async fn load_all(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.load_all_with_ids().await?.into_iter().map(|(d, _)| d).collect())
    }

    /// Every document with its `_id` (as text): the runtime tracks where a scenario came from
    /// by `_id`, which stays when the document's fields change.
    pub async fn load_all_with_ids(&self) -> anyhow::Result<Vec<(Value, String)>> {
        let cursor = self.scenarios.find(doc! {}).await.with_context(|| format!("reading scenarios from {}", self.url))?;
        let docs: Vec<Document> = cursor.try_collect().await.context("reading scenarios")?;
        Ok(docs.into_iter().map(with_id).collect())
    }

    /// Documents updated at or after `after_ms` (epoch ms), with their `_id`, for the poll loop.
    pub async fn changed_since(&self, after_ms: i64) -> anyhow::Result<Vec<(Value, String)>> {
        // `$gte`: a document written in the same millisecond as the last one seen is not missed;
        // re-reading an unchanged document is a no-op in the registry.
        let filter = doc! {"updated_at": {"$gte": bson::DateTime::from_millis(after_ms)}};
        let cursor = self.scenarios.find(filter).await.context("polling scenarios")?;
        let docs: Vec<Document> = cursor.try_collect().await.context("polling scenarios")?;
        Ok(docs.into_iter().map(with_id).collect())
    }

    pub async fn get(&self, tenant: &str, scenario: &str) -> anyhow::Result<Option<Value>> {
        let d = self.scenarios.find_one(doc! {"tenant_id": tenant, "scenario_id": scenario}).await.context("reading a scenario")?;
        Ok(d.map(to_json))
    }

    /// Replaces (or creates) a scenario document; `updated_at` is set to the server-side now.
    pub async fn upsert(&self, doc: &Value) -> anyhow::Result<()> {
        let mut d = bson::to_document(doc).context("scenario document is not representable as BSON")?;
        d.remove("_id");
        d.insert("updated_at", bson::DateTime::now());
        let tenant = d.get_str("tenant_id").context("tenant_id missing")?.to_string();
        let scenario = d.get_str("scenario_id").context("scenario_id missing")?.to_string();
        self.scenarios
            .replace_one(doc! {"tenant_id": &tenant, "scenario_id": &scenario}, d.clone())
            .upsert(true)
            .await
            .with_context(|| format!("storing scenario {tenant}/{scenario}"))?;
        d.remove("_id");
        self.history.insert_one(d).await.with_context(|| format!("recording the history of {tenant}/{scenario}"))?;
        Ok(())
    }

    /// Like [`Self::upsert`], only if the stored document is at `revision` (0: none stored).
    /// Returns false, writing nothing, when another writer changed it first.
    pub async fn replace_if_revision(&self, doc: &Value, revision: i64) -> anyhow::Result<bool> {
        let mut d = bson::to_document(doc).context("scenario document is not representable as BSON")?;
        d.remove("_id");
        d.insert("updated_at", bson::DateTime::now());
        let tenant = d.get_str("tenant_id").context("tenant_id missing")?.to_string();
        let scenario = d.get_str("scenario_id").context("scenario_id missing")?.to_string();
        let stored = if revision == 0 {
            // None stored, or one without a revision (written by another tool): an upsert on
            // that. If one with a revision exists, the unique (tenant_id, scenario_id) index
            // refuses the insert.
            let filter = doc! {"tenant_id": &tenant, "scenario_id": &scenario, "revision": {"$exists": false}};
            match self.scenarios.replace_one(filter, d.clone()).upsert(true).await {
                Ok(_) => true,
                Err(_) if self.get(&tenant, &scenario).await?.is_some() => false,
                Err(e) => return Err(e).with_context(|| format!("storing scenario {tenant}/{scenario}")),
            }
        } else {
            // Documents written by other tools may hold the revision as a double.
            let filter = doc! {"tenant_id": &tenant, "scenario_id": &scenario, "revision": {"$in": [revision, revision as f64]}};
            let r = self.scenarios.replace_one(filter, d.clone()).await.with_context(|| format!("storing scenario {tenant}/{scenario}"))?;
            r.matched_count == 1
        };
        if stored {
            d.remove("_id");
            self.history.insert_one(d).await.with_context(|| format!("recording the history of {tenant}/{scenario}"))?;
        }
        Ok(stored)
    }

    /// Every tenant document (collection `tenants`: quotas).
    pub async fn tenants(&self) -> anyhow::Result<Vec<Value>> {
        let cursor = self.tenants.find(doc! {}).await.context("reading tenants")?;
        let docs: Vec<Document> = cursor.try_collect().await.context("reading tenants")?;
        Ok(docs.into_iter().map(to_json).collect())
    }

    /// Replaces (or creates) a tenant document.
    pub async fn put_tenant(&self, doc: &Value) -> anyhow::Result<()> {
        let d = bson::to_document(doc).context("tenant document is not representable as BSON")?;
        let tenant = d.get_str("tenant_id").context("tenant_id missing")?.to_string();
        self.tenants.replace_one(doc! {"tenant_id": &tenant}, d).upsert(true).await.with_context(|| format!("storing tenant {tenant}"))?;
        Ok(())
    }

    /// Every stored revision of a scenario, oldest first.
    pub async fn history(&self, tenant: &str, scenario: &str) -> anyhow::Result<Vec<Value>> {
        let cursor = self
            .history
            .find(doc! {"tenant_id": tenant, "scenario_id": scenario})
            .sort(doc! {"revision": 1, "updated_at": 1})
            .await
            .context("reading scenario history")?;
        let docs: Vec<Document> = cursor.try_collect().await.context("reading scenario history")?;
        Ok(docs.into_iter().map(to_json).collect())
    }

    pub async fn delete(&self, tenant: &str, scenario: &str) -> anyhow::Result<bool> {
        let r = self.scenarios.delete_one(doc! {"tenant_id": tenant, "scenario_id": scenario}).await.context("deleting a scenario")?;
        Ok(r.deleted_count > 0)
    }
}

/// The unique `key` index of the `defaults` collection (created when missing, as above).
async fn ensure_layer_index(defaults: &Collection<Document>) -> anyhow::Result<()> {
    let existing = defaults.list_index_names().await.unwrap_or_default();
    if !existing.iter().any(|n| n == "layer_key") {
        let unique = IndexModel::builder()
            .keys(doc! {"key": 1})
            .options(IndexOptions::builder().unique(true).name("layer_key".to_string()).build())
            .build();
        defaults.create_index(unique).await.context("creating the defaults index layer_key")?;
    }
    Ok(())
}

/// A stored layer document as JSON: without its store-internal `key`.
fn layer_json(d: Document) -> Value {
    let mut v = to_json(d);
    if let Value::Object(m) = &mut v {
        m.remove("key");
    }
    v
}

/// Defaults layers (collection `defaults`, one document per layer `key`, every stored revision
/// appended to `defaults_history`).
impl MongoScenarioStore {
    /// Every layer document.
    pub async fn layers(&self) -> anyhow::Result<Vec<Value>> {
        let docs: Vec<Document> = self.defaults.find(doc! {}).await.context("reading defaults layers")?.try_collect().await?;
        Ok(docs.into_iter().map(layer_json).collect())
    }

    /// Layer documents updated at or after `after_ms`, for the poll loop.
    pub async fn layers_changed_since(&self, after_ms: i64) -> anyhow::Result<Vec<Value>> {
        let filter = doc! {"updated_at": {"$gte": bson::DateTime::from_millis(after_ms)}};
        let docs: Vec<Document> = self.defaults.find(filter).await.context("polling defaults layers")?.try_collect().await?;
        Ok(docs.into_iter().map(layer_json).collect())
    }

    pub async fn layer(&self, key: &str) -> anyhow::Result<Option<Value>> {
        Ok(self.defaults.find_one(doc! {"key": key}).await.context("reading a defaults layer")?.map(layer_json))
    }

    /// Stores a layer document under `key` only if the stored one is at `revision` (0: none),
    /// and appends it to the history; `updated_at` is the server's now. False, writing
    /// nothing, when another writer changed it first.
    pub async fn put_layer_if_revision(&self, key: &str, doc: &Value, revision: i64) -> anyhow::Result<bool> {
        let mut d = bson::to_document(doc).context("layer document is not representable as BSON")?;
        d.remove("_id");
        d.insert("key", key);
        d.insert("updated_at", bson::DateTime::now());
        let stored = if revision == 0 {
            // The unique key index refuses a second first revision.
            match self.defaults.insert_one(d.clone()).await {
                Ok(_) => true,
                Err(_) if self.layer(key).await?.is_some() => false,
                Err(e) => return Err(e).with_context(|| format!("storing defaults layer {key}")),
            }
        } else {
            let filter = doc! {"key": key, "revision": {"$in": [revision, revision as f64]}};
            self.defaults.replace_one(filter, d.clone()).await.with_context(|| format!("storing defaults layer {key}"))?.matched_count == 1
        };
        if stored {
            d.remove("_id");
            self.defaults_history.insert_one(d).await.with_context(|| format!("recording the history of defaults layer {key}"))?;
        }
        Ok(stored)
    }

    /// Every stored revision of a layer, oldest first.
    pub async fn layer_history(&self, key: &str) -> anyhow::Result<Vec<Value>> {
        let cursor = self.defaults_history.find(doc! {"key": key}).sort(doc! {"revision": 1, "updated_at": 1}).await;
        let docs: Vec<Document> = cursor.context("reading defaults layer history")?.try_collect().await?;
        Ok(docs.into_iter().map(layer_json).collect())
    }
}
