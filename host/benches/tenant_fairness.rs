//! `cargo bench -p rtscore --bench tenant_fairness`: how late a well-behaved tenant's windows
//! are emitted while another tenant's plugins hog the pipeline thread, on the release binary as
//! users run it (`rtscore run --events-file -`, events paced in real time from stdin, event
//! time at 60x so a one-minute slide closes every wall second).
//!
//! Tenant `good`: one scenario, built-in formula. Tenant `evil`: 20 scenarios whose plugin
//! (`test-busy`) burns about 150 ms per call, 75% of the 200 ms per-call budget, so no per-call
//! rule ever stops it; together they want about 3 s of CPU per wall second. Three runs of
//! `RTSCORE_BENCH_SECONDS` (default 45) each: good alone; good and evil under the default
//! `quotas.cpu_ms_per_minute` (3,000 ms); good and evil with it raised to 60,000 ms (no
//! per-tenant bound). Prints, per run, good's emission delay (from when the event that closes a
//! window was due to the hot list line in the JSONL sink: p50, p99, max) and windows still
//! missing at the end, and evil's windows scored by its plugin. The bound docs/security.md
//! states: `cpu_ms_per_minute` plus one call's budget per minute of wall time.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::plugin::PluginEngine;
use rtscore::scoring::WindowBatch;
use rtscore_testkit::{Host, plugins};
use serde_json::{Value, json};

const SPEED: i64 = 60;
const EVIL_SCENARIOS: usize = 20;
const TARGET_CALL: Duration = Duration::from_millis(150);
const LATENESS_MS: i64 = 10_000;

/// Loop turns of `test-busy` that take about [`TARGET_CALL`] per call here.
fn calibrate(module: &[u8]) -> u64 {
    let limits = SandboxLimits { call_budget: Duration::from_secs(30), ..SandboxLimits::default() };
    let engine = PluginEngine::new(limits, Default::default()).expect("engine");
    let compiled = engine.compile(module).expect("compile test-busy");
    let probe = 50_000_000u64;
    let mut inst = engine.instantiate(compiled, "test-busy@0.1.0", &json!({"iterations": probe})).expect("instantiate");
    let mut batch = WindowBatch::new(0, 60_000, vec!["view".into()], vec![1.0], 0.0);
    batch.push_row(0, 1, 0.0, 0.0);
    batch.finish_item();
    let batch = plugins::with_context(batch);
    let mut out = Vec::new();
    inst.score(&batch, &mut out).expect("warm-up");
    let t = Instant::now();
    inst.score(&batch, &mut out).expect("calibration call");
    (probe as f64 * TARGET_CALL.as_secs_f64() / t.elapsed().as_secs_f64()) as u64
}

fn scenario(tenant: &str, id: &str, plugin: Option<Value>) -> Value {
    let mut doc = json!({"tenant_id": tenant, "scenario_id": id, "status": "active", "revision": 1,
        "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 5, "window_slide_minutes": 1, "top_n": 10}}}});
    if let Some(p) = plugin {
        doc["config"]["realtime_compute"]["hot_score"]["plugin"] = p;
    }
    doc
}

struct Outcome {
    delays_ms: Vec<f64>,
    missing: usize,
    evil_windows: usize,
    evil_by_plugin: usize,
}

fn run(dir: &Path, with_evil: bool, cpu_ms_per_minute: u64, iterations: u64, seconds: u64) -> Outcome {
    let scen = dir.join("scenarios");
    let _ = std::fs::remove_dir_all(&scen);
    std::fs::create_dir_all(scen.join("tenants")).unwrap();
    let mut docs = vec![scenario("good", "feed", None)];
    if with_evil {
        let plugin = json!({"name": "test-busy", "version": "0.1.0", "params": {"iterations": iterations}});
        docs.extend((0..EVIL_SCENARIOS).map(|k| scenario("evil", &format!("s{k}"), Some(plugin.clone()))));
        let quotas = json!({"tenant_id": "evil", "quotas": {"cpu_ms_per_minute": cpu_ms_per_minute}});
        std::fs::write(scen.join("tenants/evil.json"), quotas.to_string()).unwrap();
    }
    for d in &docs {
        let name = format!("{}.{}.json", d["tenant_id"].as_str().unwrap(), d["scenario_id"].as_str().unwrap());
        std::fs::write(scen.join(name), d.to_string()).unwrap();
    }
    let out_path = dir.join("out.jsonl");
    let _ = std::fs::remove_file(&out_path);
    std::fs::File::create(&out_path).unwrap();
    let mut child = Host::run()
        .events_stdin()
        .view_off()
        .scenarios_dir(&scen)
        .plugins_dir(dir.join("plugins"))
        .jsonl_out(&out_path)
        .partition_idle_ms(600_000)
        .dead_letter_file(dir.join("dead.jsonl"))
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rtscore");
    // Plugins are loaded before the first event is read; give the host a moment to load them.
    std::thread::sleep(Duration::from_secs(if with_evil { 3 } else { 1 }));
    let now = chrono::Utc::now().timestamp_millis();
    let base = (now - 6 * 3_600_000).div_euclid(60_000) * 60_000;
    let started = Instant::now();
    // Wall time (since `started`) at which event time `ts` is due.
    let due = move |ts: i64| Duration::from_secs_f64((ts - base) as f64 / SPEED as f64 / 1000.0);

    // Tail the sink: when each hot list line appears.
    let tail_path = out_path.clone();
    let (tx, rx) = std::sync::mpsc::channel::<(Value, Duration)>();
    let tail = std::thread::spawn(move || {
        let mut reader = BufReader::new(std::fs::File::open(&tail_path).unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(seconds + 60);
        while Instant::now() < deadline {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => std::thread::sleep(Duration::from_millis(2)),
                Ok(_) if line.ends_with('\n') => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && tx.send((v, started.elapsed())).is_err()
                    {
                        return;
                    }
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => return,
            }
        }
    });

    // Feed in real time: every 10 ms, the events due by then (good: 200 per event minute; evil:
    // 20 per scenario and event minute).
    let mut stdin = child.stdin.take().unwrap();
    let end_ts = base + seconds as i64 * 1000 * SPEED;
    let step = 60_000 / 200;
    let mut ts = base;
    let mut n = 0u64;
    while ts < end_ts {
        let now = started.elapsed();
        let mut buf = Vec::new();
        while ts < end_ts && due(ts) <= now {
            let item = (n * 7) % 97;
            buf.extend_from_slice(
                format!(
                    r#"{{"tenant_id":"good","scenario_id":"feed","user_id":"u{}","item_id":"i{item}","action":"view","ts":{ts}}}"#,
                    n % 50
                )
                .as_bytes(),
            );
            buf.push(b'\n');
            if with_evil && n.is_multiple_of(10) {
                let k = (n / 10) as usize % EVIL_SCENARIOS;
                buf.extend_from_slice(
                    format!(r#"{{"tenant_id":"evil","scenario_id":"s{k}","user_id":"u1","item_id":"e{item}","action":"view","ts":{ts}}}"#)
                        .as_bytes(),
                );
                buf.push(b'\n');
            }
            ts += step;
            n += 1;
        }
        // Blocks while the host is behind: the delays below count from when events were due.
        stdin.write_all(&buf).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    stdin.flush().unwrap();
    // Windows whose closing event was sent by the end (E + lateness < end_ts).
    let expected: Vec<i64> = (base / 60_000 + 1..).map(|m| m * 60_000).take_while(|e| e + LATENESS_MS < end_ts).collect();
    let mut good: BTreeMap<i64, Duration> = BTreeMap::new();
    let (mut evil_windows, mut evil_by_plugin) = (0, 0);
    let wait_until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < wait_until && expected.iter().any(|e| !good.contains_key(e)) {
        while let Ok((v, at)) = rx.recv_timeout(Duration::from_millis(50)) {
            if v["kind"] != "hot" {
                continue;
            }
            let end = v["window_end"].as_i64().unwrap_or(0);
            if v["tenant_id"] == "good" {
                good.entry(end).or_insert(at);
            } else if v["tenant_id"] == "evil" {
                evil_windows += 1;
                evil_by_plugin += usize::from(!v["plugin"].is_null());
            }
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = tail.join();
    let mut delays_ms: Vec<f64> =
        expected.iter().filter_map(|e| good.get(e).map(|at| at.saturating_sub(due(e + LATENESS_MS)).as_secs_f64() * 1000.0)).collect();
    delays_ms.sort_by(f64::total_cmp);
    let missing = expected.iter().filter(|e| !good.contains_key(e)).count();
    Outcome { delays_ms, missing, evil_windows, evil_by_plugin }
}

fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let seconds: u64 = std::env::var("RTSCORE_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let module = plugins::module("test-busy");
    std::fs::write(dir.path().join("plugins/test-busy@0.1.0.wasm"), &module).unwrap();
    let iterations = calibrate(&module);
    println!(
        "tenant fairness: good (1 scenario, built-in) beside evil ({EVIL_SCENARIOS} scenarios, a plugin burning ~{} ms of its 200 ms budget per call, {iterations} turns); {seconds} s per run, event time x{SPEED}",
        TARGET_CALL.as_millis()
    );
    println!();
    println!("| run | good windows | good delay p50 | p99 | max | good windows missing at end | evil windows (by its plugin) |");
    println!("|---|---|---|---|---|---|---|");
    for (label, with_evil, cpu) in [
        ("good alone", false, 3_000),
        ("+ evil, cpu_ms_per_minute 3,000 (default)", true, 3_000),
        ("+ evil, cpu_ms_per_minute 60,000 (no tenant bound)", true, 60_000),
    ] {
        let o = run(dir.path(), with_evil, cpu, iterations, seconds);
        println!(
            "| {label} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} ({}) |",
            o.delays_ms.len(),
            pct(&o.delays_ms, 0.5),
            pct(&o.delays_ms, 0.99),
            o.delays_ms.last().copied().unwrap_or(f64::NAN),
            o.missing,
            o.evil_windows,
            o.evil_by_plugin
        );
    }
}
