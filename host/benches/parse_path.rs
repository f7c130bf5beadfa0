//! `cargo bench -p rtscore --bench parse_path` (issue 21, item 1): how far the path users run is
//! from a plain JSON parse of the same file, side by side in one run.
//!
//! Workload: `RTSCORE_BENCH_EVENTS` events (default 2,000,000) written to a JSONL file by the
//! generator's `EventMaker` (6 scenarios of 2 tenants, 100k items, the eight seed actions,
//! categories, tags and watch times, six hours of event time), and the six scenario documents.
//! Rows, each a median of `RTSCORE_BENCH_RUNS` (default 5) runs alternated with the others:
//! - parse-only rates over the file's lines in memory (one thread): a plain typed
//!   `serde_json::from_slice`, the same struct through `sonic_rs` and `simd_json` (which parses
//!   in place, so its rate includes copying each line), and the host's `parse_event`
//!   (parse + every validation rule);
//! - the release binary as users run it: `taskset -c 0 rtscore run --events-file F
//!   --scenarios-dir D --jsonl-out /dev/null --view off`, spawned, events / wall time (process
//!   start and file read included).
//!
//! `RTSCORE_BASELINE_BIN=path` adds the same user-path row for another build (say, the commit
//! before a change), alternated with the others: before/after in one run.
//!
//! The binary is the release `rtscore` Cargo builds beside this bench (so never stale), or
//! `RTSCORE_BIN`.

// Bench code: a failed unwrap is a failed bench, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rtscore::config::ScenarioKey;
use rtscore::event::parse_event;
use rtscore::sources::generator::EventMaker;

const T0: i64 = 1_767_225_600_000;
const ITEMS: u64 = 100_000;
const SCENARIOS: [(&str, &str, u32, u32, f64); 6] = [
    ("shop", "home", 60, 15, 0.1),
    ("shop", "search", 30, 10, 0.0),
    ("shop", "cart", 120, 30, 0.7),
    ("video", "feed", 60, 5, 2.0),
    ("video", "trending", 20, 5, 5.0),
    ("video", "related", 240, 60, 0.05),
];

/// What a job needs from an event, typed, as a plain parser would read it.
#[derive(serde::Deserialize)]
#[allow(dead_code, reason = "read to be parsed, not used")]
struct Plain<'a> {
    tenant_id: &'a str,
    scenario_id: &'a str,
    user_id: &'a str,
    item_id: &'a str,
    action: &'a str,
    ts: i64,
    category: Option<&'a str>,
    #[serde(borrow, default)]
    tags: Vec<&'a str>,
    watch_time_ms: Option<f64>,
}

fn write_workload(dir: &Path, n: usize) -> PathBuf {
    let scenarios = dir.join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    for (t, s, w, sl, l) in SCENARIOS {
        let doc = serde_json::json!({"tenant_id": t, "scenario_id": s, "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": w, "window_slide_minutes": sl, "decay_lambda": l, "top_n": 100}}}});
        std::fs::write(scenarios.join(format!("{t}__{s}.json")), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }
    let keys = SCENARIOS.iter().map(|(t, s, ..)| ScenarioKey { tenant_id: (*t).into(), scenario_id: (*s).into() }).collect();
    let mut maker = EventMaker::new(keys, ITEMS, 7);
    let span = 6 * 3_600_000i64;
    let mut out = Vec::with_capacity(n * 200);
    for i in 0..n {
        out.extend_from_slice(maker.next_event(T0 + span * i as i64 / n as i64));
        out.push(b'\n');
    }
    let events = dir.join("events.jsonl");
    std::fs::write(&events, out).unwrap();
    events
}

/// Events per second of `parse` over every line; panics if any line fails (the file is valid).
fn parse_rate(lines: &[&[u8]], mut parse: impl FnMut(&[u8]) -> bool) -> f64 {
    let start = Instant::now();
    let ok = lines.iter().filter(|l| parse(l)).count();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(ok, lines.len(), "every generated event parses");
    ok as f64 / secs
}

fn binary() -> PathBuf {
    std::env::var_os("RTSCORE_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rtscore")), PathBuf::from)
}

/// Events per second of one replay by the release binary, pinned to core 0.
fn user_path_rate(bin: &Path, events: &Path, scenarios: &Path, n: usize) -> f64 {
    let start = Instant::now();
    let status = Command::new("taskset")
        .args(["-c", "0"])
        .arg(bin)
        .args(["run", "--events-file"])
        .arg(events)
        .arg("--scenarios-dir")
        .arg(scenarios)
        .args(["--jsonl-out", "/dev/null", "--view", "off"])
        .env_remove("MONGODB_URL")
        .env_remove("REDIS_URL")
        .env_remove("KAFKA_SERVERS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run taskset (util-linux) and the release binary");
    assert!(status.success(), "{} run failed: {status}", bin.display());
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("RTSCORE_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let runs: usize = std::env::var("RTSCORE_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let bin = binary();
    assert!(bin.exists(), "no binary at {}", bin.display());
    let dir = std::env::temp_dir().join(format!("rtscore-parse-path-{}", std::process::id()));
    let events = write_workload(&dir, n);
    let data = std::fs::read(&events).unwrap();
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    println!(
        "workload: {n} events, {:.0} MB, {} scenarios, {ITEMS} items; {runs} alternated runs per row",
        data.len() as f64 / 1e6,
        SCENARIOS.len()
    );

    let baseline = std::env::var_os("RTSCORE_BASELINE_BIN").map(PathBuf::from);
    let mut rows: [(&str, Vec<f64>); 6] = [
        ("serde_json, typed (parse only)", Vec::new()),
        ("sonic-rs, typed (parse only)", Vec::new()),
        ("simd-json, typed (parse only, copy included)", Vec::new()),
        ("host parse_event (parse + validate)", Vec::new()),
        ("user path: taskset -c 0 rtscore run (file read, windows, JSONL)", Vec::new()),
        ("user path, RTSCORE_BASELINE_BIN", Vec::new()),
    ];
    let mut scratch = Vec::with_capacity(4096);
    for _ in 0..runs {
        rows[0].1.push(parse_rate(&lines, |l| serde_json::from_slice::<Plain<'_>>(l).is_ok()));
        rows[1].1.push(parse_rate(&lines, |l| sonic_rs::from_slice::<Plain<'_>>(l).is_ok()));
        rows[2].1.push(parse_rate(&lines, |l| {
            scratch.clear();
            scratch.extend_from_slice(l);
            simd_json::serde::from_slice::<Plain<'_>>(&mut scratch).is_ok()
        }));
        rows[3].1.push(parse_rate(&lines, |l| parse_event(l).is_ok()));
        rows[4].1.push(user_path_rate(&bin, &events, &dir.join("scenarios"), n));
        if let Some(b) = &baseline {
            rows[5].1.push(user_path_rate(b, &events, &dir.join("scenarios"), n));
        }
    }
    let base = median(rows[0].1.clone());
    println!("{:<66} {:>12} {:>10}   runs (k events/s)", "path", "events/s", "vs serde");
    for (name, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        let m = median(v.clone());
        let all: Vec<String> = v.iter().map(|r| format!("{:.0}", r / 1e3)).collect();
        println!("{name:<66} {m:>12.0} {:>9.2}x   {}", m / base, all.join(" "));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
