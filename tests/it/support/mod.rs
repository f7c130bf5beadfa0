//! Shared harness for integration tests on the real local stack (Kafka, FerretDB, Redis).
//! Each test gets unique topic, database and tenant names, so tests run in any order and in
//! parallel; waits poll a condition until a deadline, never sleep a fixed time.

pub mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `scenarios/` directory under `parent` holding `docs`, one `<scenario_id>.json` each, for
/// hosts run with `--scenarios-dir`.
pub fn write_scenarios(parent: &Path, docs: &[serde_json::Value]) -> PathBuf {
    let dir = parent.join("scenarios");
    std::fs::create_dir_all(&dir).expect("create scenarios dir");
    for d in docs {
        let id = d["scenario_id"].as_str().expect("document has a scenario_id");
        std::fs::write(dir.join(format!("{id}.json")), serde_json::to_vec(d).expect("serialise")).expect("write scenario");
    }
    dir
}

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
    _use: std::sync::Arc<StackUse>,
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
    /// Arguments of `rtscore run` consuming `topic` in consumer group `group` from this stack's
    /// Kafka, followed by `rest`.
    pub fn kafka_run<'a>(&'a self, topic: &'a str, group: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["run", "--kafka-servers", self.kafka.as_str(), "--topic", topic, "--group-id", group];
        args.extend_from_slice(rest);
        args
    }

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
        Stack {
            kafka: std::env::var("KAFKA_SERVERS").unwrap_or_else(|_| "127.0.0.1:19092".into()),
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
        cli(&[
            "scenario",
            "patch",
            "--mongodb-url",
            &self.mongodb_url,
            "--mongodb-database",
            database,
            "--tenant-id",
            tenant,
            "--scenario-id",
            scenario,
            "--body",
            body,
        ]);
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `rtscore` with none of the environment defaults (KAFKA_SERVERS, MONGODB_URL, REDIS_URL,
/// RTSCORE_*) that a developer's shell or scripts/test.sh exports: tests pass every flag.
/// `RTSCORE_TEST_BIN` runs another build (the release binary, to measure bounds as users run
/// it); by default it is the binary `cargo test` built.
pub fn rtscore_command() -> Command {
    let bin = std::env::var_os("RTSCORE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rtscore").into());
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("RTSCORE_") || ["KAFKA_SERVERS", "MONGODB_URL", "MONGODB_DATABASE", "REDIS_URL"].contains(&k.as_str()) {
            c.env_remove(k);
        }
    }
    c
}

/// The runtime binary, running; stopped with SIGTERM (then killed) when dropped. Its stderr
/// goes to a file that is printed if the test fails.
pub struct HostProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl HostProcess {
    pub fn start(args: &[&str]) -> HostProcess {
        Self::spawn(args, Stdio::inherit())
    }

    /// Like [`HostProcess::start`], with stdin a pipe (take it with [`HostProcess::take_stdin`]).
    pub fn start_piped(args: &[&str]) -> HostProcess {
        Self::spawn(args, Stdio::piped())
    }

    fn spawn(args: &[&str], stdin: Stdio) -> HostProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("host.log");
        let child = rtscore_command()
            .args(args)
            .env("RTSCORE_LOG", "info")
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rtscore");
        HostProcess { child, log, _dir: dir }
    }

    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().expect("started with start_piped")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no flush, no snapshot, no commit (a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit (the runtime flushes on SIGTERM).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!("---- rtscore log ----\n{}", self.log());
        }
    }
}

/// Hot lists of a JSONL sink, by (tenant/scenario, window_end), in emission order.
pub type SinkWindows = BTreeMap<(String, i64), Vec<(String, f64)>>;

pub fn read_hot_sink(path: &Path) -> (SinkWindows, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut windows = SinkWindows::new();
    let mut records = Vec::new();
    // Only complete lines: the host may be mid-write.
    for line in text.lines().filter(|l| l.ends_with('}')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["kind"] == "hot" {
            let key = format!("{}/{}", v["tenant_id"].as_str().unwrap(), v["scenario_id"].as_str().unwrap());
            let items = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["item_id"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap()))
                .collect();
            windows.insert((key, v["window_end"].as_i64().unwrap()), items);
        }
        records.push(v);
    }
    (windows, records)
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

/// Differences between expected and actual hot lists at relative tolerance `rel`; ties at the
/// top-N cut are accepted. Windows whose expected list is empty may be absent.
pub fn hot_differences(want: &SinkWindows, got: &SinkWindows, rel: f64) -> Vec<String> {
    let mut diffs = Vec::new();
    for (key, w) in want {
        let Some(g) = got.get(key) else {
            if !w.is_empty() {
                diffs.push(format!("missing window {key:?}"));
            }
            continue;
        };
        let cut = w.last().map_or(0.0, |x| x.1);
        let gm: BTreeMap<_, _> = g.iter().cloned().collect();
        let wm: BTreeMap<_, _> = w.iter().cloned().collect();
        for (item, s) in w {
            match gm.get(item) {
                Some(gs) if !close(*gs, *s, rel) => diffs.push(format!("{key:?} {item}: got {gs} want {s}")),
                None if !close(*s, cut, rel) => diffs.push(format!("{key:?} {item} absent (want {s})")),
                _ => {}
            }
        }
        for (item, s) in g {
            if !wm.contains_key(item) && !close(*s, cut, rel) {
                diffs.push(format!("{key:?} {item} extra ({s})"));
            }
        }
    }
    for (key, g) in got {
        if !want.contains_key(key) && !g.is_empty() {
            diffs.push(format!("extra window {key:?}"));
        }
    }
    diffs
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Body of `GET http://127.0.0.1:{port}{path}`, if the server answers 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Runs `rtscore <args>` to completion; panics with its output if it fails.
pub fn cli(args: &[&str]) -> String {
    let out = rtscore_command().args(args).output().expect("run rtscore");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rtscore {args:?} failed:\n{text}");
    text
}

/// One JSON event line.
pub fn event_line(tenant: &str, scenario: &str, item: &str, action: &str, ts: i64) -> Vec<u8> {
    format!(r#"{{"tenant_id":"{tenant}","scenario_id":"{scenario}","user_id":"u","item_id":"{item}","action":"{action}","ts":{ts}}}"#)
        .into_bytes()
}

/// Skewed random traffic for one scenario: an event every 2 s from `from` to `to`, items
/// `i0..i39` (low numbers hotter), actions from `actions`.
pub fn traffic(seed: u64, from: i64, to: i64, actions: &[&str]) -> Vec<rtscore::scoring::reference::RefEvent> {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(seed);
    let n = ((to - from) / 2_000) as usize;
    (0..n)
        .map(|i| rtscore::scoring::reference::RefEvent {
            item_id: format!("i{}", (rng.random::<f64>().powi(2) * 40.0) as u32),
            action: actions[rng.random_range(0..actions.len())].into(),
            ts: from + i as i64 * 2_000,
        })
        .collect()
}

/// Checks every sink record of `kind` (`hot` or `shadow`) against the reference hot lists that
/// `want(record)` picks (by its revision, say), at relative tolerance 1e-3. Returns how many
/// records were checked.
pub fn check_against_reference<'w>(
    records: &[serde_json::Value],
    kind: &str,
    mut want: impl FnMut(&serde_json::Value) -> &'w BTreeMap<i64, Vec<(String, f64)>>,
) -> usize {
    let mut checked = 0;
    for r in records.iter().filter(|r| r["kind"] == kind) {
        let end = r["window_end"].as_i64().unwrap();
        let expected = want(r).get(&end).cloned().unwrap_or_default();
        let got: Vec<(String, f64)> =
            r["items"].as_array().unwrap().iter().map(|i| (i["item_id"].as_str().unwrap().into(), i["score"].as_f64().unwrap())).collect();
        let diffs = hot_differences(&BTreeMap::from([(("w".into(), end), expected)]), &BTreeMap::from([(("w".into(), end), got)]), 1e-3);
        assert!(diffs.is_empty(), "{kind} window {end} (revision {}): {diffs:?}", r["config_revision"]);
        checked += 1;
    }
    checked
}

/// The status hash a host writes for `tenant/scenario`.
pub fn status_of(redis: &mut redis::Connection, tenant: &str, scenario: &str) -> BTreeMap<String, String> {
    redis::Commands::hgetall(redis, format!("rt:{tenant}:{scenario}:status")).unwrap_or_default()
}
