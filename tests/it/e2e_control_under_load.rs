//! Control never waits behind data (docs/operations.md, "Control under load"). Each test holds
//! a backlog on purpose, with a source the host cannot keep up with (a pipe written without
//! pause, the generator far above its rate, a Kafka topic produced to without pause, with
//! `--job all` or `RTSCORE_TEST_JOB`), and checks the bounds the runtime states while the backlog lasts:
//!
//! - `/status` is never more than 1 s old, and shows the backlog;
//! - a scenario change is applied within 1 s, and a window is scored with it within 1 s plus
//!   one window (at the host's event-time speed, which a backlog makes fast);
//! - a plugin swap the same;
//! - snapshots are never older than 2x `--snapshot-interval-ms`;
//! - SIGTERM ends the process within 2 s, with the final snapshot stored.
//!
//! The figures each test measures are printed (`cargo test -p rtscore --test
//! e2e_control_under_load -- --nocapture --test-threads 1`; with `RTSCORE_TEST_BIN` set to the
//! release binary for the figures users see) and recorded in docs/benchmarks.md.

use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rtscore::plugin::sha256_hex;
use rtscore_testkit::*;
use serde_json::{Value, json};

const T0: i64 = 1_767_225_600_000;
/// Event-time step between consecutive events of the synthetic traffic.
const STEP_MS: i64 = 50;
const STATUS_MAX_AGE: Duration = Duration::from_secs(1);
const APPLY_BOUND: Duration = Duration::from_secs(1);
const EXIT_BOUND: Duration = Duration::from_secs(2);

/// Scenario `id` of `tenant`: 10-minute windows sliding by 1 minute, profiles and metrics on.
fn scenario(tenant: &str, id: &str, revision: i64, purchase: f64, plugin: Option<&Value>) -> Value {
    let mut doc = json!({"tenant_id": tenant, "scenario_id": id, "revision": revision, "config": {"realtime_compute": {
        "hot_score": {"action_weights": {"view": 1.0, "click": 2.0, "purchase": purchase}, "decay_lambda": 0.5,
                      "window_size_minutes": 10, "window_slide_minutes": 1, "top_n": 20},
        "user_profile": {"update_frequency_minutes": 1}, "metrics": {"window_size_minutes": 1}}}});
    if let Some(p) = plugin {
        doc["config"]["realtime_compute"]["hot_score"]["plugin"] = p.clone();
    }
    doc
}

fn write_doc(dir: &Path, doc: &Value) {
    // Written aside and renamed in, as an editor or a deploy tool would: the watcher never
    // sees half a document.
    let id = doc["scenario_id"].as_str().unwrap();
    let tmp = dir.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(doc).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{id}.json"))).unwrap();
}

/// Events per block of the synthetic traffic.
const BLOCK: u64 = 4_096;

/// Blocks of synthetic events: two scenarios, 500 items, 500 users, one event every
/// [`STEP_MS`] of event time. Rendered once; each further block only rewrites the timestamps
/// in place, so even a debug build of this test writes faster than a release host reads.
struct Traffic {
    block: Vec<u8>,
    /// Where each event's 13-digit `ts` starts in `block`.
    ts_at: Vec<usize>,
    next: u64,
}

impl Traffic {
    fn new(tenant: &str) -> Traffic {
        const ACTIONS: [&str; 4] = ["view", "view", "click", "purchase"];
        let (mut block, mut ts_at) = (Vec::new(), Vec::new());
        for i in 0..BLOCK {
            let scenario = if i.is_multiple_of(2) { "a" } else { "b" };
            let _ = write!(
                block,
                r#"{{"tenant_id":"{tenant}","scenario_id":"{scenario}","user_id":"u{}","item_id":"i{}","action":"{}","category":"c{}","ts":"#,
                i % 500,
                (i * 7_919) % 500,
                ACTIONS[(i % 4) as usize],
                i % 7
            );
            ts_at.push(block.len());
            block.extend_from_slice(b"0000000000000}\n");
        }
        Traffic { block, ts_at, next: 0 }
    }

    /// The next block (event times continue from the last one).
    fn next_block(&mut self) -> &[u8] {
        for (j, &at) in self.ts_at.iter().enumerate() {
            let mut ts = T0 + (self.next + j as u64) as i64 * STEP_MS;
            for d in self.block[at..at + 13].iter_mut().rev() {
                *d = b'0' + (ts % 10) as u8;
                ts /= 10;
            }
        }
        self.next += BLOCK;
        &self.block
    }
}

/// Writes synthetic events into `sink` without pause until `stop` (or the sink closes).
fn flood(tenant: String, stop: Arc<AtomicBool>, mut sink: impl FnMut(&[u8]) -> bool + Send + 'static) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut traffic = Traffic::new(&tenant);
        while !stop.load(Ordering::Relaxed) {
            if !sink(traffic.next_block()) {
                break;
            }
        }
        traffic.next
    })
}

/// `/status` of the host on `port`, with the time it arrived.
fn status(port: u16) -> Option<(Value, i64)> {
    let body = http_get(port, "/status")?;
    let now = chrono::Utc::now().timestamp_millis();
    Some((serde_json::from_str(&body).ok()?, now))
}

fn row<'a>(status: &'a Value, scenario: &str) -> Option<&'a Value> {
    status["scenarios"].as_array()?.iter().find(|r| r["scenario_id"] == scenario)
}

/// `--job` of the hosts under test: `all` (the slowest, so the hardest backlog) unless
/// `RTSCORE_TEST_JOB` says otherwise (docs/benchmarks.md has rows for `item_hot_score` too).
fn job() -> String {
    std::env::var("RTSCORE_TEST_JOB").unwrap_or_else(|_| "all".into())
}

/// The tests of this file run one at a time: each saturates the machine on purpose, and two
/// at once would measure each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A host under test with its working directory.
struct Loaded {
    host: HostProcess,
    port: u16,
    tenant: String,
    scenarios: PathBuf,
    sink: PathBuf,
    plugin: Value,
    _dir: tempfile::TempDir,
}

impl Loaded {
    /// A host on `source` (a `Host` with its event source set) with scenario `a` (built-in
    /// formula) and `b` (the `decay-weighted` plugin, so its module is compiled before the
    /// backlog starts).
    fn start(tenant: &str, source: Host) -> Loaded {
        let dir = tempfile::tempdir().unwrap();
        let (plugins, sink) = (dir.path().join("plugins"), dir.path().join("out.jsonl"));
        std::fs::create_dir_all(&plugins).unwrap();
        let module = plugins::module("decay-weighted");
        std::fs::write(plugins.join("decay-weighted@0.1.0.wasm"), &module).unwrap();
        let plugin = json!({"name": "decay-weighted", "version": "0.1.0", "sha256": sha256_hex(&module)});
        let scenarios = write_scenarios(dir.path(), &[scenario(tenant, "a", 1, 10.0, None), scenario(tenant, "b", 1, 10.0, Some(&plugin))]);
        let port = free_port();
        let host = source.job(&job()).scenarios_dir(&scenarios).plugins_dir(&plugins).jsonl_out(&sink).http(port).view_off().start();
        let loaded = Loaded { host, port, tenant: tenant.to_string(), scenarios, sink, plugin, _dir: dir };
        assert!(
            wait_until(Duration::from_secs(60), || loaded.plugin_state("b").is_some_and(|s| s == "active decay-weighted@0.1.0")),
            "scenario b never ran its plugin\n{}",
            loaded.host.log()
        );
        loaded
    }

    fn plugin_state(&self, scenario: &str) -> Option<String> {
        let (s, _) = status(self.port)?;
        row(&s, scenario)?["plugin_state"].as_str().map(str::to_string)
    }

    /// Waits until the host is `behind` (a backlog holds), then samples `/status` for
    /// `period`: its age never passes [`STATUS_MAX_AGE`]. Returns the oldest age seen.
    fn status_stays_fresh(&self, period: Duration, behind: impl Fn(&Value) -> bool) -> Duration {
        assert!(
            wait_until(Duration::from_secs(30), || status(self.port).is_some_and(|(s, _)| behind(&s["backlog"]))),
            "no backlog: {:?}\n{}",
            status(self.port).map(|s| s.0["backlog"].clone()),
            self.host.log()
        );
        let (end, mut oldest) = (Instant::now() + period, 0i64);
        while Instant::now() < end {
            let (s, at) = status(self.port).expect("/status answers under load");
            let age = at - s["updated_at_ms"].as_i64().expect("updated_at_ms");
            oldest = oldest.max(age);
            assert!(age <= STATUS_MAX_AGE.as_millis() as i64, "/status is {age} ms old under load");
            std::thread::sleep(Duration::from_millis(50));
        }
        Duration::from_millis(oldest as u64)
    }

    /// Saves `doc` for scenario `a` and measures until it is applied (per `/status`) and until
    /// the first window scored with it is written (per the JSONL sink). Checks the bound on the
    /// way: applied within 1 s, and no window written more than 1 s after the change is scored
    /// otherwise (so the first window with it comes within 1 s plus one window at the host's
    /// pace, however slow the backlog makes that pace).
    fn change(&self, source: &str, doc: &Value, scored_with: impl Fn(&Value) -> bool) -> Change {
        let mut tail = Tail::open(&self.sink);
        let revision = doc["revision"].as_i64().unwrap();
        let written = Instant::now();
        write_doc(&self.scenarios, doc);
        assert!(
            wait_until_fast(Duration::from_secs(10), || status(self.port)
                .is_some_and(|(s, _)| row(&s, "a").is_some_and(|r| r["config_revision"] == revision))),
            "{source}: revision {revision} not applied\n{}",
            self.host.log()
        );
        let applied = written.elapsed();
        assert!(applied <= APPLY_BOUND, "{source}: revision {revision} applied after {applied:?}");
        let (mut first, mut last_old) = (None, None);
        let deadline = written + Duration::from_secs(60);
        while first.is_none() && Instant::now() < deadline {
            // Windows seen now were written at most one poll ago.
            let seen = written.elapsed().saturating_sub(POLL);
            for r in tail.hot_lists().filter(|r| r["scenario_id"] == "a") {
                if r["config_revision"] == revision && scored_with(&r) {
                    first.get_or_insert(seen);
                } else if first.is_none() {
                    last_old = Some(seen);
                    assert!(
                        seen <= APPLY_BOUND,
                        "{source}: a window written {seen:?} after revision {revision} was saved is not scored with it: {r}"
                    );
                }
            }
            std::thread::sleep(POLL);
        }
        let first = first.unwrap_or_else(|| panic!("{source}: no window scored with revision {revision}\n{}", self.host.log()));
        Change { applied, first_window: first, last_old_window: last_old }
    }

    /// SIGTERM with the backlog still there: the time to exit.
    fn stop(&mut self) -> Duration {
        let asked = Instant::now();
        let exit = self.host.stop();
        let took = asked.elapsed();
        assert!(exit.success(), "exit {exit:?}\n{}", self.host.log());
        took
    }
}

/// What one scenario change took.
struct Change {
    applied: Duration,
    first_window: Duration,
    last_old_window: Option<Duration>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "applied {} ms, first window {} ms", self.applied.as_millis(), self.first_window.as_millis())?;
        match self.last_old_window {
            Some(d) => write!(f, " (last old window {} ms)", d.as_millis()),
            None => Ok(()),
        }
    }
}

/// How often the sink is read while waiting for a window.
const POLL: Duration = Duration::from_millis(20);

/// Like [`wait_until`], polling every 10 ms (the bounds measured here are around a second).
fn wait_until_fast(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The records appended to a JSONL sink since it was opened (the sink grows fast under load,
/// so it is read from where the last look ended, not from the start).
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn open(path: &Path) -> Tail {
        Tail { path: path.to_path_buf(), offset: std::fs::metadata(path).map_or(0, |m| m.len()), partial: Vec::new() }
    }

    /// Hot lists only: under `--job all` profiles are most of the sink, and parsing them all
    /// would make the test, not the host, the slow part.
    fn hot_lists(&mut self) -> impl Iterator<Item = Value> {
        let mut f = std::fs::File::open(&self.path).unwrap();
        f.seek(std::io::SeekFrom::Start(self.offset)).unwrap();
        let mut bytes = std::mem::take(&mut self.partial);
        self.offset += f.read_to_end(&mut bytes).unwrap() as u64;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(complete);
        bytes
            .as_slice()
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with(r#"{"kind":"hot""#))
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// The bounds every source shares: fresh status, config change, plugin swap, and the exit.
fn check_control(mut l: Loaded, source: &str, behind: impl Fn(&Value) -> bool) {
    let oldest_status = l.status_stays_fresh(Duration::from_secs(3), &behind);
    let config = l.change(source, &scenario(&l.tenant, "a", 2, 99.0, None), |r| r["plugin"].is_null());
    let swap = l.change(source, &scenario(&l.tenant, "a", 3, 99.0, Some(&l.plugin)), |r| r["plugin"] == "decay-weighted@0.1.0");
    let backlog = status(l.port).map(|(s, _)| s["backlog"].clone()).unwrap_or_default();
    assert!(behind(&backlog), "{source}: the backlog ran dry during the test: {backlog}");
    let exit = l.stop();
    assert!(exit <= EXIT_BOUND, "{source}: SIGTERM to exit took {exit:?}\n{}", l.host.log());
    println!(
        "{source}, --job {}: status age max {} ms | config change {config} | plugin swap {swap} | SIGTERM to exit {} ms | backlog {backlog}",
        job(),
        oldest_status.as_millis(),
        exit.as_millis()
    );
}

#[test]
fn a_file_source_with_a_backlog_still_stops_reloads_and_reports() {
    let _serial = one_at_a_time();
    let tenant = unique("cf");
    let mut l = Loaded::start(&tenant, Host::run().events_stdin());
    let mut stdin = l.host.take_stdin();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = flood(tenant, stop.clone(), move |b| stdin.write_all(b).is_ok());
    check_control(l, "file (a pipe written without pause)", |b| b["queued_events"].as_u64().is_some_and(|n| n > 0));
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
}

#[test]
fn a_generator_far_above_its_rate_still_stops_reloads_and_reports() {
    let _serial = one_at_a_time();
    let tenant = unique("cg");
    // Far above what one host runs `--job all` at, in batches (a twentieth of the rate) small
    // enough that event time, which the generator stamps per batch, moves in steps of 3 s.
    let l = Loaded::start(&tenant, Host::run().generate_rate(1_000_000));
    check_control(l, "generator at 1M events/s", |b| b["generator_behind"].as_u64().is_some_and(|n| n > 0));
}

#[test]
fn a_kafka_catch_up_still_stops_reloads_snapshots_and_reports() {
    let _serial = one_at_a_time();
    // Wall-clock bounds on 2 cores: the other suites' hosts must not share them meanwhile (run
    // alone it applies a change in ~0.15 s; beside the whole suite it once took 1.08 s).
    let stack = Stack::ensure_exclusive();
    let (tenant, topic) = (unique("ck"), unique("events-"));
    stack.create_topic(&topic, 2);
    // A head start, then production without pause while the host runs.
    let stop = Arc::new(AtomicBool::new(false));
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let (kafka_topic, flood_stop) = (topic.clone(), stop.clone());
    let writer = flood(tenant.clone(), flood_stop, move |buf| {
        for (n, line) in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let mut rec = rdkafka::producer::BaseRecord::<(), [u8]>::to(&kafka_topic).payload(line).partition((n % 2) as i32);
            while let Err((_, back)) = producer.send(rec) {
                producer.poll(Duration::from_millis(5));
                rec = back;
            }
        }
        producer.poll(Duration::ZERO);
        true
    });
    std::thread::sleep(Duration::from_secs(2));
    let group = unique("g");
    let l = Loaded::start(&tenant, Host::run().kafka(&stack, &topic, &group).redis(&stack).snapshot_interval_ms(1000));
    // Snapshots keep their pace under the backlog.
    let mut oldest_snapshot = 0.0f64;
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        if let Some(age) = status(l.port).and_then(|(s, _)| s["snapshot_age_seconds"].as_f64()) {
            oldest_snapshot = oldest_snapshot.max(age);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        oldest_snapshot > 0.0 && oldest_snapshot <= 2.0,
        "snapshot age {oldest_snapshot} s under load (interval 1 s)\n{}",
        l.host.log()
    );
    println!("kafka: snapshot age max {:.2} s with --snapshot-interval-ms 1000", oldest_snapshot);
    check_control(l, "kafka catch-up", |b| {
        b["queued_events"].as_u64().is_some_and(|n| n > 0) || b["kafka_lag"].as_i64().is_some_and(|n| n > 0)
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // The final snapshot: the group's committed offsets cover what was processed.
    let committed = committed_offsets(&stack.kafka, &group, &topic);
    assert!(committed > 0, "no offsets committed at shutdown");
}

/// Sum of the offsets `group` committed on `topic`'s two partitions.
fn committed_offsets(brokers: &str, group: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    tpl.add_partition(topic, 1);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    got.elements().iter().filter_map(|e| if let rdkafka::Offset::Offset(o) = e.offset() { Some(o) } else { None }).sum()
}
