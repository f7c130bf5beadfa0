//! `cargo bench -p rtscore --bench scale_out`: a fleet on this machine. N events
//! (`RTSCORE_BENCH_EVENTS`, default 2,000,000) over six scenarios go to a fresh 6-partition
//! topic keyed by scenario, and the same events to one keyed by user; N events of one hot
//! scenario go to two more topics the same way (not timed). Then, for each workload and each
//! with a fresh consumer group, 1, 2 and 3 host processes (release) of 1 and 2 pipelines each
//! (`--threads`), on the scenario-keyed topic and (`--repartition`) on the user-keyed one:
//! events/s from the moment every pipeline owns partitions (`/status`) until together they
//! have consumed every event — the first host starts consuming alone while the others join, so
//! that part is left out — and the wall time from start to done. Finally 3 hosts, one killed
//! with SIGKILL at 40% and a replacement started at once: seconds from the kill until the
//! group's committed offsets reach the end of every partition (caught up, with snapshots every
//! second). `RTSCORE_BENCH_ONLY=threads` runs the table alone.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rtscore::config::ScenarioKey;
use rtscore::sources::generator::EventMaker;
use rtscore_testkit::{Stack, http_get, stack_cmd};

const PARTITIONS: i32 = 6;

struct Bench {
    stack: Stack,
    /// Per workload (six scenarios, one hot scenario): the topic keyed by scenario and the same
    /// events keyed by user (`--repartition` reads it).
    topics: [(String, String); 2],
    scenarios: PathBuf,
    n: u64,
}

/// How the hosts of one row run.
#[derive(Clone, Copy)]
struct Layout {
    hosts: usize,
    threads: usize,
    repartition: bool,
    /// The one-hot-scenario workload rather than six scenarios.
    one_scenario: bool,
}

struct Host {
    child: Child,
    port: u16,
}

impl Bench {
    fn start_host(&self, group: &str) -> Host {
        self.start_host_as(group, Layout { hosts: 1, threads: 1, repartition: false, one_scenario: false })
    }

    fn start_host_as(&self, group: &str, layout: Layout) -> Host {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (by_scenario, by_user) = &self.topics[usize::from(layout.one_scenario)];
        let topic = if layout.repartition { by_user } else { by_scenario };
        let mut host = rtscore_testkit::Host::run()
            .kafka(&self.stack, topic, group)
            .scenarios_dir(&self.scenarios)
            .redis(&self.stack)
            .view_off()
            .snapshot_interval_ms(1000)
            .http(port)
            .arg("--threads", layout.threads.to_string());
        if layout.repartition {
            host = host.repartition();
        }
        let child = host.command().stderr(Stdio::null()).spawn().expect("start rtscore");
        Host { child, port }
    }

    fn statuses(hosts: &[Host]) -> Vec<serde_json::Value> {
        hosts.iter().filter_map(|h| http_get(h.port, "/status")).filter_map(|s| serde_json::from_str(&s).ok()).collect()
    }

    fn events_in(hosts: &[Host]) -> u64 {
        Self::statuses(hosts).iter().filter_map(|v| v["stats"]["events_in"].as_u64()).sum()
    }

    /// Every host answers and each of its pipelines owns at least one partition.
    fn settled(hosts: &[Host]) -> bool {
        let s = Self::statuses(hosts);
        let owns = |v: &serde_json::Value| v["partitions"].as_array().is_some_and(|p| !p.is_empty());
        s.len() == hosts.len() && s.iter().all(|v| owns(v) && v["pipelines"].as_array().is_none_or(|p| p.iter().all(owns)))
    }

    /// (events/s once every pipeline owns partitions, seconds from start to done).
    /// `None` for the rate when every event was consumed before every pipeline owned
    /// partitions (too few events for the layout: raise `RTSCORE_BENCH_EVENTS`).
    fn throughput(&self, layout: Layout) -> (Option<f64>, f64) {
        let Layout { hosts, threads, repartition, one_scenario } = layout;
        let group = format!("bench-scale-{}-{hosts}-{threads}-{repartition}-{one_scenario}", std::process::id());
        let started = Instant::now();
        let mut running: Vec<Host> = (0..hosts).map(|_| self.start_host_as(&group, layout)).collect();
        let mut settled: Option<(Instant, u64)> = None;
        loop {
            let seen = Self::events_in(&running);
            if settled.is_none() && Self::settled(&running) {
                settled = Some((Instant::now(), seen));
            }
            if seen >= self.n {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "not done in 10 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        let total = started.elapsed().as_secs_f64();
        let rate = settled.filter(|(_, seen)| *seen < self.n).map(|(at, seen)| (self.n - seen) as f64 / at.elapsed().as_secs_f64());
        running.iter_mut().for_each(stop);
        (rate, total)
    }

    /// Committed offsets of `group` have reached the end of every partition.
    fn caught_up(&self, group: &str, ends: &[i64]) -> bool {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.stack.kafka).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.topics[0].0, p);
        }
        let Ok(committed) = c.committed_offsets(tpl, Duration::from_secs(5)) else { return false };
        (0..PARTITIONS).all(
            |p| matches!(committed.find_partition(&self.topics[0].0, p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= ends[p as usize]),
        )
    }

    /// Seconds from killing one of 3 hosts at 40% to the group being caught up.
    fn recovery(&self) -> f64 {
        let group = format!("bench-scale-{}-kill", std::process::id());
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.stack.kafka).create().unwrap();
        let ends: Vec<i64> = (0..PARTITIONS).map(|p| c.fetch_watermarks(&self.topics[0].0, p, Duration::from_secs(5)).unwrap().1).collect();
        let mut hosts: Vec<Host> = (0..3).map(|_| self.start_host(&group)).collect();
        let started = Instant::now();
        while Self::events_in(&hosts) < self.n * 4 / 10 {
            assert!(started.elapsed() < Duration::from_secs(600), "not at 40% in 10 minutes");
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = Instant::now();
        let _ = hosts[0].child.kill();
        let _ = hosts[0].child.wait();
        hosts[0] = self.start_host(&group);
        while !self.caught_up(&group, &ends) {
            assert!(killed.elapsed() < Duration::from_secs(600), "not caught up 10 minutes after the kill");
            std::thread::sleep(Duration::from_millis(200));
        }
        let secs = killed.elapsed().as_secs_f64();
        hosts.iter_mut().for_each(stop);
        secs
    }
}

fn stop(h: &mut Host) {
    // Only a child not yet reaped: its pid cannot have been reused.
    if matches!(h.child.try_wait(), Ok(None)) {
        let _ = Command::new("kill").arg("-TERM").arg(h.child.id().to_string()).status();
        let _ = h.child.wait();
    }
}

/// A failed assertion unwinds past the rows' own `stop`: no host outlives the bench.
impl Drop for Host {
    fn drop(&mut self) {
        stop(self);
    }
}

/// `n` events over `keys` to `topic`, each on its scenario's partition, and the same events to
/// `by_user` on their user's.
fn produce(kafka: &str, topic: &str, by_user: &str, n: u64, keys: &[ScenarioKey]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    // One generator per scenario, so each event's partition is its scenario's.
    let mut makers: Vec<EventMaker> = keys.iter().enumerate().map(|(i, k)| EventMaker::new(vec![k.clone()], 200_000, i as u64)).collect();
    let t0 = 1_767_225_600_000i64;
    for i in 0..n {
        let s = (i % keys.len() as u64) as usize;
        let line = makers[s].next_event(t0 + (i as i64) * 6 * 3_600_000 / n as i64).to_vec();
        let user = user_partition(&line);
        for (to, partition) in [(topic, s as i32 % PARTITIONS), (by_user, user)] {
            let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(to).payload(&line[..]).partition(partition);
            while let Err((_, back)) = producer.send(rec) {
                producer.poll(Duration::from_millis(5));
                rec = back;
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// The partition of an event's `user_id` (FNV-1a of its value), as a producer keying by user
/// would pick.
fn user_partition(line: &[u8]) -> i32 {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    let user = v["user_id"].as_str().unwrap_or_default();
    let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    (hash % PARTITIONS as u64) as i32
}

fn main() {
    let stack = Stack::ensure();
    let n: u64 = rtscore_testkit::env_number("RTSCORE_BENCH_EVENTS", 2_000_000);
    let topic_pair = |tag: &str| {
        let pair = (format!("bench-scale-{tag}{}", std::process::id()), format!("bench-scale-{tag}user-{}", std::process::id()));
        stack_cmd(&["topic-create", &pair.0, &PARTITIONS.to_string()]);
        stack_cmd(&["topic-create", &pair.1, &PARTITIONS.to_string()]);
        pair
    };
    let topics = [topic_pair(""), topic_pair("one-")];
    let keys: Vec<ScenarioKey> = (0..6).map(|i| ScenarioKey::new("bench", &format!("s{i}"))).collect();
    let scenarios = std::env::temp_dir().join(format!("rtscore-scale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scenarios).unwrap();
    for k in &keys {
        let doc = serde_json::json!({"tenant_id": "bench", "scenario_id": &*k.scenario_id, "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": 60, "window_slide_minutes": 15, "decay_lambda": 0.1}}}});
        std::fs::write(scenarios.join(format!("{}.json", k.scenario_id)), serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    for ((by_scenario, by_user), keys) in topics.iter().zip([&keys[..], &keys[..1]]) {
        eprintln!("producing {n} events of {} scenario(s) to {by_scenario} and to {by_user} ...", keys.len());
        produce(&stack.kafka, by_scenario, by_user, n, keys);
    }
    let bench = Bench { stack, topics, scenarios, n };
    let only_threads = std::env::var("RTSCORE_BENCH_ONLY").is_ok_and(|v| v == "threads");

    println!(
        "\n| events of | topic keyed by | hosts (processes, one group) | pipelines per host (`--threads`) | events | events/s once every pipeline owns partitions | per pipeline | seconds, start to done |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for one_scenario in [false, true] {
        for repartition in [false, true] {
            for threads in [1, 2] {
                for hosts in 1..=3 {
                    let (rate, secs) = bench.throughput(Layout { hosts, threads, repartition, one_scenario });
                    let of = if one_scenario { "one scenario" } else { "six scenarios" };
                    let keyed = if repartition { "user (`--repartition`)" } else { "scenario" };
                    let (rate, per) = match rate {
                        Some(r) => (format!("{r:.0}"), format!("{:.0}", r / (hosts * threads) as f64)),
                        None => ("done before the group settled".to_string(), String::new()),
                    };
                    println!("| {of} | {keyed} | {hosts} | {threads} | {n} | {rate} | {per} | {secs:.2} |");
                }
            }
        }
    }
    if !only_threads {
        let secs = bench.recovery();
        println!("\n| recovery: 3 hosts, one SIGKILLed at 40% and replaced | seconds from kill to committed offsets at the end |");
        println!("|---|---:|");
        println!("| {n} events, snapshots every 1 s, session timeout 10 s | {secs:.1} |");
    }
    let _ = std::fs::remove_dir_all(&bench.scenarios);
}
