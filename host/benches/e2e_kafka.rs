//! `cargo bench -p rtscore --bench e2e_kafka`: events/s end to end through the local Kafka and
//! Redis. Produces N events (`RTSCORE_BENCH_EVENTS`, default 2,000,000) to a fresh 3-partition
//! topic first (not timed), then times a host from start until it has consumed them all with
//! windows scored and written to Redis, and the host's emission delay (watermark passing a window
//! end -> hot list in Redis, p50/p99 from its `/metrics`). The rate once consuming (from the
//! first consumed events to the last, read from the host's live `/status` counter) is set
//! against the parse-only ceiling measured on the same events in the same run. Starts the local
//! stack if needed.
//!
//! `RTSCORE_BASELINE_BIN=path` swaps the plugin row for the built-in run by another build (say,
//! the commit before a change), alternated with this one on the same topic: before/after in one
//! run, with the ratio of their medians. `RTSCORE_BENCH_ROUNDS` sets the runs per row (5).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rtscore::config::ScenarioKey;
use rtscore::event::parse_event;
use rtscore::sources::generator::EventMaker;
use rtscore_testkit::{Host, Stack, http_get, repo_root, stack_cmd};

fn main() {
    let stack = Stack::ensure();
    let n: u64 = rtscore_testkit::env_number("RTSCORE_BENCH_EVENTS", 2_000_000);
    let topic = format!("bench-e2e-{}", std::process::id());
    stack_cmd(&["topic-create", &topic, "3"]);

    let keys: Vec<ScenarioKey> = ["home", "search", "trending"].iter().map(|s| ScenarioKey::new("bench", s)).collect();
    let dir = std::env::temp_dir().join(format!("rtscore-e2e-bench-{}", std::process::id()));
    // Two scenario sets over the same events: the built-in formula, and the same formula as the
    // `decay-weighted` plugin (built by scripts/build-plugins.sh into RTSCORE_PLUGINS_OUT).
    let plugins_dir =
        std::env::var_os("RTSCORE_PLUGINS_OUT").map(std::path::PathBuf::from).unwrap_or_else(|| repo_root().join("target/plugins"));
    assert!(
        plugins_dir.join("decay-weighted@0.1.0.wasm").is_file(),
        "{} lacks decay-weighted@0.1.0.wasm: run scripts/build-plugins.sh (or set RTSCORE_PLUGINS_OUT)",
        plugins_dir.display()
    );
    for (variant, plugin) in [("builtin", None), ("plugin", Some(serde_json::json!({"name": "decay-weighted", "version": "0.1.0"})))] {
        let scenarios = dir.join(variant);
        std::fs::create_dir_all(&scenarios).unwrap();
        for (k, (w, s, l)) in keys.iter().zip([(60, 15, 0.1), (30, 10, 0.0), (20, 5, 2.0)]) {
            let mut hot = serde_json::json!({"window_size_minutes": w, "window_slide_minutes": s, "decay_lambda": l});
            if let Some(p) = &plugin {
                hot["plugin"] = p.clone();
            }
            let doc = serde_json::json!({"tenant_id": "bench", "scenario_id": &*k.scenario_id, "config": {"realtime_compute": {"hot_score": hot}}});
            std::fs::write(scenarios.join(format!("{}.json", k.scenario_id)), serde_json::to_vec(&doc).unwrap()).unwrap();
        }
    }
    eprintln!("producing {n} events to {topic} ...");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let mut maker = EventMaker::new(keys, 1_000_000, 3);
    let t0 = 1_767_225_600_000i64;
    let lines: Vec<Vec<u8>> = (0..n).map(|i| maker.next_event(t0 + (i as i64) * 6 * 3_600_000 / n as i64).to_vec()).collect();
    // The parse-and-validate ceiling on these very events, in this run, for the ratio.
    let started = Instant::now();
    let parsed = lines.iter().filter(|l| parse_event(l).is_ok()).count();
    let ceiling = parsed as f64 / started.elapsed().as_secs_f64();
    for (i, line) in lines.iter().enumerate() {
        let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(&topic).payload(&line[..]).partition((i % 3) as i32);
        while let Err((_, back)) = producer.send(rec) {
            producer.poll(Duration::from_millis(5));
            rec = back;
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    println!(
        "\n| path | events | seconds (incl. host start) | events/s (incl. start) | start to first event (s) | events/s once consuming | vs ceiling | emission delay p50 / p99 (ms) | host CPU per event (µs, median) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("| parse + validate only (ceiling), same events, one core | {n} | | | | {ceiling:.0} | 100% | | |");
    // The two rows' hosts alternate, `rounds` runs each, medians reported: on a shared
    // 2-core machine the broker, the host and Redis contend, and single runs swing by ~10%.
    let rounds: usize = rtscore_testkit::env_number("RTSCORE_BENCH_ROUNDS", 5).max(1);
    let baseline = std::env::var_os("RTSCORE_BASELINE_BIN").map(std::path::PathBuf::from);
    // (row name, scenario set, binary: None for this build's).
    let variants: [(&str, &str, Option<&std::path::Path>); 2] = match &baseline {
        None => [("builtin", "builtin", None), ("plugin", "plugin", None)],
        Some(b) => [("builtin", "builtin", None), ("builtin, RTSCORE_BASELINE_BIN", "builtin", Some(b))],
    };
    let mut runs: Vec<Vec<HostRun>> = vec![Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (v, (_, set, bin)) in variants.iter().enumerate() {
            runs[v].push(run_host(&stack, &topic, &dir.join(set), &plugins_dir, n, *set == "plugin", *bin));
        }
    }
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    for ((variant, ..), mut rs) in variants.iter().zip(runs) {
        let mut cpu: Vec<f64> = rs.iter().map(|r| r.cpu_us_per_event).collect();
        cpu.sort_by(f64::total_cmp);
        let cpu = cpu[cpu.len() / 2];
        rs.sort_by(|a, b| a.steady.total_cmp(&b.steady));
        let spread = format!("{:.0}–{:.0}", rs[0].steady, rs[rs.len() - 1].steady);
        let run = rs.swap_remove(rs.len() / 2);
        println!(
            "| Kafka (3 partitions) -> host (release) -> Redis, item_hot_score, {variant} (median of {rounds}) | {n} | {:.2} | {:.0} | {:.2} | {:.0} ({spread}) | {:.0}% | {} / {} | {cpu:.2} |",
            run.elapsed.as_secs_f64(),
            n as f64 / run.elapsed.as_secs_f64(),
            run.startup.as_secs_f64(),
            run.steady,
            100.0 * run.steady / ceiling,
            run.p50,
            run.p99
        );
        rates.push(run.steady);
        cpus.push(cpu);
    }
    let _ = std::fs::remove_dir_all(&dir);
    match baseline {
        None => println!(
            "\nplugin / built-in end to end (once consuming): {:.0}%; emission delay target p99 <= 200 ms",
            100.0 * rates[1] / rates[0]
        ),
        Some(_) => println!(
            "\nthis build / RTSCORE_BASELINE_BIN: events/s once consuming {:.3}, host CPU per event {:.3}",
            rates[0] / rates[1],
            cpus[0] / cpus[1]
        ),
    }
}

/// User + system CPU seconds of process `pid` so far (`/proc/PID/stat`, at 100 ticks a second).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<f64>().ok()).sum::<f64>() / 100.0
}

struct HostRun {
    elapsed: Duration,
    /// From spawning the host to its first consumed events (process start, group join).
    startup: Duration,
    /// Events/s from the first consumed events to the last.
    steady: f64,
    /// The host process's CPU time (every thread, start-up included) per event consumed: less
    /// swayed than the rate by what else the two cores run (the broker, Redis).
    cpu_us_per_event: f64,
    p50: String,
    p99: String,
}

/// Starts a host in a fresh consumer group on `topic` and times it until it has consumed `n`
/// events; reads its emission-delay summary from `/metrics` before stopping it.
fn run_host(
    stack: &Stack,
    topic: &str,
    scenarios: &std::path::Path,
    plugins: &std::path::Path,
    n: u64,
    plugins_used: bool,
    bin: Option<&std::path::Path>,
) -> HostRun {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    // A fresh group per run: a reused one would resume from the previous run's commits.
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let group = format!("bench-{}-{}-{run}", std::process::id(), scenarios.file_name().unwrap().to_string_lossy());
    let mut host = Host::run();
    if let Some(bin) = bin {
        host = host.binary(bin);
    }
    let host = KillOnDrop(
        host.kafka(stack, topic, &group)
            .scenarios_dir(scenarios)
            .plugins_dir(plugins)
            .redis(stack)
            .view_off()
            .http(port)
            .command()
            .stderr(Stdio::null())
            .spawn()
            .expect("start rtscore"),
    );
    // (time, events) at the first poll that saw events: the steady rate is measured from there.
    let mut first: Option<(Instant, u64)> = None;
    let cpu_s: f64;
    let elapsed = loop {
        let status = http_get(port, "/status").and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()).unwrap_or_default();
        let seen = status["stats"]["events_in"].as_u64().unwrap_or(0);
        if seen > 0 && first.is_none() {
            first = Some((Instant::now(), seen));
        }
        if seen >= n {
            cpu_s = process_cpu_seconds(host.0.id());
            // A plugin that fell back would make the plugin row the built-in's in disguise.
            let states: Vec<&str> =
                status["scenarios"].as_array().into_iter().flatten().filter_map(|r| r["plugin_state"].as_str()).collect();
            let want = if plugins_used { "active" } else { "builtin" };
            assert!(
                !states.is_empty() && states.iter().all(|s| s.split_whitespace().next() == Some(want)),
                "expected every scenario {want}, got {states:?}"
            );
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(600), "only {seen} of {n} events consumed in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    };
    let done = started + elapsed;
    let (t1, seen1) = first.expect("events were seen");
    let steady = (n - seen1) as f64 / (done - t1).as_secs_f64().max(1e-3);
    let startup = t1 - started;
    // Emission delay as the host measured it (a Prometheus summary: quantiles over the run).
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    let quantile = |q: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("rtscore_hot_emission_delay_seconds{") && l.contains(&format!("quantile=\"{q}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or("n/a".to_string(), |s| format!("{:.1}", s * 1e3))
    };
    let (p50, p99) = (quantile("0.5"), quantile("0.99"));
    drop(host);
    HostRun { elapsed, startup, steady, cpu_us_per_event: cpu_s * 1e6 / n as f64, p50, p99 }
}

/// The host process, killed when the run ends or a check fails (a leaked host would keep
/// consuming and hold the caller's pipes open).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
