//! The local stack (Kafka, FerretDB, Redis on 127.0.0.1, `scripts/stack.sh`): its addresses,
//! the gate between tests that use it and tests that stop a service, and helpers for Kafka
//! topics, Redis and scenario documents in MongoDB.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::{cli, repo_root, unique};

/// Runs `scripts/stack.sh` with `args` (the outage tests stop and start services with it).
pub fn stack_cmd(args: &[&str]) {
    let ok = Command::new("bash").arg(repo_root().join("scripts/stack.sh")).args(args).status().expect("run scripts/stack.sh").success();
    assert!(ok, "scripts/stack.sh {args:?} failed");
}

/// Addresses of the local stack. Holding one is using the stack: the outage tests, which stop a
/// service, wait until no other test holds one, and the others wait while an outage test runs
/// (all suites share one test process).
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka: String,
    pub mongodb_url: String,
    pub redis_url: String,
    topics: std::sync::Arc<CreatedTopics>,
    _use: std::sync::Arc<StackUse>,
}

/// Topics a test created, deleted when its last [`Stack`] clone is dropped: the suite makes
/// hundreds of them per run, and Kafka's cold start slows with every partition it must load.
#[derive(Debug, Default)]
struct CreatedTopics {
    kafka: String,
    names: std::sync::Mutex<Vec<String>>,
}

impl Drop for CreatedTopics {
    fn drop(&mut self) {
        let names = std::mem::take(self.names.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner));
        if names.is_empty() {
            return;
        }
        let kafka = self.kafka.clone();
        // Its own thread: the last clone may be dropped inside a test's Tokio runtime. A topic
        // left behind (Kafka down after an outage test) only waits for retention.
        let deleted = std::thread::spawn(move || {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &kafka).create().ok()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))).request_timeout(Some(Duration::from_secs(5)));
            rt.block_on(admin.delete_topics(&refs, &options)).ok()
        });
        let _ = deleted.join();
    }
}

/// Readers (tests using the stack) and writers (tests stopping a service) of the stack.
struct Gate {
    state: std::sync::Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    users: usize,
    exclusive: bool,
    waiting_exclusive: usize,
}

static GATE: Gate = Gate {
    state: std::sync::Mutex::new(GateState { users: 0, exclusive: false, waiting_exclusive: 0 }),
    changed: std::sync::Condvar::new(),
};

thread_local! {
    /// Shared uses this thread holds: a test that asks again (through a helper) never waits on
    /// itself.
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One test's use of the stack; released when the last clone of its [`Stack`] is dropped.
#[derive(Debug)]
pub struct StackUse {
    exclusive: bool,
}

impl StackUse {
    fn shared() -> StackUse {
        let mut s = GATE.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if HELD.get() == 0 {
            while s.exclusive || s.waiting_exclusive > 0 {
                s = GATE.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        s.users += 1;
        HELD.set(HELD.get() + 1);
        StackUse { exclusive: false }
    }

    fn exclusive() -> StackUse {
        let mut s = GATE.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.waiting_exclusive += 1;
        while s.exclusive || s.users > 0 {
            s = GATE.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        s.waiting_exclusive -= 1;
        s.exclusive = true;
        StackUse { exclusive: true }
    }
}

impl Drop for StackUse {
    fn drop(&mut self) {
        let mut s = GATE.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.exclusive {
            s.exclusive = false;
        } else {
            s.users -= 1;
            HELD.set(HELD.get().saturating_sub(1));
        }
        GATE.changed.notify_all();
    }
}

impl Stack {
    /// Starts the stack once per test process (idempotent: running services are reused),
    /// unless `RTSCORE_STACK=external` says the caller manages it.
    pub fn ensure() -> Stack {
        Self::start(StackUse::shared())
    }

    /// Like [`Stack::ensure`], for a test that stops and starts services: it runs alone.
    pub fn ensure_exclusive() -> Stack {
        Self::start(StackUse::exclusive())
    }

    fn start(stack_use: StackUse) -> Stack {
        static STARTED: OnceLock<()> = OnceLock::new();
        STARTED.get_or_init(|| {
            if std::env::var("RTSCORE_STACK").as_deref() != Ok("external") {
                let status =
                    Command::new("bash").arg(repo_root().join("scripts/stack.sh")).arg("start").status().expect("run scripts/stack.sh");
                assert!(status.success(), "scripts/stack.sh start failed");
            }
        });
        let kafka = std::env::var("KAFKA_SERVERS").unwrap_or_else(|_| "127.0.0.1:19092".into());
        Stack {
            topics: std::sync::Arc::new(CreatedTopics { kafka: kafka.clone(), names: Default::default() }),
            kafka,
            mongodb_url: std::env::var("MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27018".into()),
            redis_url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into()),
            _use: std::sync::Arc::new(stack_use),
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// Like [`Self::create_topic`], with topic configs such as `("max.message.bytes", "4194304")`.
    pub fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.kafka).create().expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let res = rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))))
            .expect("create topic");
        for r in res {
            if let Err((t, e)) = r {
                assert!(format!("{e}").contains("TopicAlreadyExists"), "creating topic {t}: {e}");
            }
        }
        self.topics.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(name.to_string());
    }

    /// Deletes `topic` with the topics this stack created, though something else created it
    /// (the internal topic of `rtscore run --repartition`).
    pub fn delete_later(&self, topic: &str) {
        self.topics.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(topic.to_string());
    }

    /// Produces each `(partition, record)` in order and waits until delivered.
    pub fn produce_to(&self, topic: &str, records: &[(i32, Vec<u8>)]) {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &self.kafka).set("linger.ms", "5").create().expect("producer");
        for (partition, r) in records {
            let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).payload(r.as_slice()).partition(*partition);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert!(format!("{e}").contains("Queue full"), "produce: {e}");
                        producer.poll(Duration::from_millis(10));
                        rec = back;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush producer");
    }

    /// Produces records in order, round-robin over `partitions`, and waits until delivered.
    pub fn produce(&self, topic: &str, partitions: i32, records: &[Vec<u8>]) {
        let spread: Vec<(i32, Vec<u8>)> = records.iter().enumerate().map(|(i, r)| ((i as i32) % partitions, r.clone())).collect();
        self.produce_to(topic, &spread);
    }

    /// Every message of `topic` (payload and headers) until `expect` arrived or the deadline.
    pub fn consume(&self, topic: &str, expect: usize, deadline: Duration) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.kafka)
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let end = Instant::now() + deadline;
        let mut out = Vec::new();
        while out.len() < expect && Instant::now() < end {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers.insert(hd.key.to_string(), String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned());
                    }
                }
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis_url.as_str()).expect("redis url").get_connection().expect("redis connection")
    }

    /// Stores scenario documents in `database` (through the runtime's own store).
    pub fn put_scenarios(&self, database: &str, docs: &[serde_json::Value]) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = rtscore::config::mongo::MongoScenarioStore::connect(&self.mongodb_url, database).await.expect("connect MongoDB");
            for d in docs {
                store.upsert(d).await.expect("store scenario");
            }
        });
    }
}

impl Stack {
    /// Deep-merges `body` into a stored scenario through the real CLI (`rtscore scenario patch`).
    pub fn patch_scenario(&self, database: &str, tenant: &str, scenario: &str, body: &str) {
        self.scenario_cli("patch", database, tenant, scenario, &["--body", body]);
    }

    /// Runs `rtscore scenario VERB` on one scenario of the stack's MongoDB `database`, with
    /// `extra` arguments; returns its output.
    pub fn scenario_cli(&self, verb: &str, database: &str, tenant: &str, scenario: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "scenario",
            verb,
            "--mongodb-url",
            &self.mongodb_url,
            "--mongodb-database",
            database,
            "--tenant-id",
            tenant,
            "--scenario-id",
            scenario,
        ];
        args.extend_from_slice(extra);
        cli(&args)
    }
}
