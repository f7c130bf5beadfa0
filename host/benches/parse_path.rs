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
//!   start and file read included), with the default `--job item_hot_score` and with `--job
//!   all` (hot score, profiles and metrics; issue 21 item 2), alternated;
//! - with a Redis at `RTSCORE_BENCH_REDIS_URL` or `REDIS_URL` (scripts/bench.sh exports the
//!   local stack's), one more `--job all` run writing to it as well (keys under a prefix of
//!   their own, deleted afterwards), and the commands per second Redis counted over it
//!   (`CONFIG RESETSTAT`, then `INFO commandstats`).
//!
//! `RTSCORE_BASELINE_BIN=path` adds the same user-path rows for another build (say, the commit
//! before a change), alternated with the others: before/after in one run.
//! `RTSCORE_BENCH_ONLY=all` runs only the user-path rows (hot score alone, `--job all`, Redis).
//! `RTSCORE_BENCH_WORKLOAD_DIR=dir` keeps the workload in `dir` (events.jsonl, scenarios/) and
//! reuses it when it holds the same number of events (for `perf record` of one replay).
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

/// Events per second of one replay by the release binary, pinned to core 0, with `extra`
/// flags (say `--job all`).
fn user_path_rate(bin: &Path, events: &Path, scenarios: &Path, n: usize, extra: &[&str]) -> f64 {
    let start = Instant::now();
    let status = Command::new("taskset")
        .args(["-c", "0"])
        .arg(bin)
        .args(["run", "--events-file"])
        .arg(events)
        .arg("--scenarios-dir")
        .arg(scenarios)
        .args(["--jsonl-out", "/dev/null", "--view", "off"])
        .args(extra)
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

/// Redis's command counters (`INFO commandstats`): calls per command.
fn redis_calls(con: &mut redis::Connection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).expect("INFO commandstats");
    let mut calls: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), n))
        })
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    calls
}

/// The key prefix of the Redis row's writes (`--redis-key-prefix`), deleted after it.
const BENCH_PREFIX: &str = "rtscore-bench-parse-path";

/// One `--job all` replay writing to Redis at `url` as well (profiles' and metrics' hashes, hot
/// lists), its counters reset first: events/s and Redis commands/s (`INFO commandstats`).
fn redis_row(bin: &Path, events: &Path, scenarios: &Path, n: usize, url: &str) -> (f64, Vec<(String, u64)>, f64) {
    let mut con = redis::Client::open(url).and_then(|c| c.get_connection()).expect("connect to Redis");
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut con).expect("CONFIG RESETSTAT");
    let start = Instant::now();
    let rate = user_path_rate(bin, events, scenarios, n, &["--job", "all", "--redis-url", url, "--redis-key-prefix", BENCH_PREFIX]);
    let secs = start.elapsed().as_secs_f64();
    let calls = redis_calls(&mut con);
    // The bench's keys go again (a third of a GB of profiles otherwise stays for their TTL).
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{BENCH_PREFIX}:*"))
        .arg("COUNT")
        .arg(10_000)
        .clone()
        .iter::<String>(&mut con)
        .expect("SCAN")
        .collect::<Result<_, _>>()
        .expect("SCAN");
    for chunk in keys.chunks(10_000) {
        let () = redis::cmd("UNLINK").arg(chunk).query(&mut con).expect("UNLINK");
    }
    let total: u64 = calls.iter().filter(|(c, _)| c != "config" && c != "info").map(|(_, n)| n).sum();
    (rate, calls, total as f64 / secs)
}

fn main() {
    let n: usize = rtscore_testkit::env_number("RTSCORE_BENCH_EVENTS", 2_000_000);
    let runs: usize = rtscore_testkit::env_number("RTSCORE_BENCH_RUNS", 5).max(1);
    // `all`: only the two user-path rows, hot score alone and `--job all` (and the Redis row).
    let only_all = std::env::var("RTSCORE_BENCH_ONLY").is_ok_and(|v| v == "all");
    let bin = binary();
    assert!(bin.exists(), "no binary at {}", bin.display());
    // RTSCORE_BENCH_WORKLOAD_DIR keeps the workload there (and reuses it when it holds `n` events).
    let kept = std::env::var_os("RTSCORE_BENCH_WORKLOAD_DIR").map(PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("rtscore-parse-path-{}", std::process::id())));
    let reuse = dir.join("events.jsonl");
    let events = match std::fs::read(&reuse) {
        Ok(d) if kept.is_some() && d.iter().filter(|&&b| b == b'\n').count() == n => reuse,
        _ => write_workload(&dir, n),
    };
    let data = std::fs::read(&events).unwrap();
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    println!(
        "workload: {n} events, {:.0} MB, {} scenarios, {ITEMS} items; {runs} alternated runs per row; events in {}",
        data.len() as f64 / 1e6,
        SCENARIOS.len(),
        events.display()
    );

    let baseline = std::env::var_os("RTSCORE_BASELINE_BIN").map(PathBuf::from);
    let mut rows: [(&str, Vec<f64>); 8] = [
        ("serde_json, typed (parse only)", Vec::new()),
        ("sonic-rs, typed (parse only)", Vec::new()),
        ("simd-json, typed (parse only, copy included)", Vec::new()),
        ("host parse_event (parse + validate)", Vec::new()),
        ("user path: taskset -c 0 rtscore run (file read, windows, JSONL)", Vec::new()),
        ("user path, RTSCORE_BASELINE_BIN", Vec::new()),
        ("user path, --job all (hot score + profiles + metrics, JSONL)", Vec::new()),
        ("user path, --job all, RTSCORE_BASELINE_BIN", Vec::new()),
    ];
    let scenarios = dir.join("scenarios");
    let mut scratch = Vec::with_capacity(4096);
    for _ in 0..runs {
        if !only_all {
            rows[0].1.push(parse_rate(&lines, |l| serde_json::from_slice::<Plain<'_>>(l).is_ok()));
            rows[1].1.push(parse_rate(&lines, |l| sonic_rs::from_slice::<Plain<'_>>(l).is_ok()));
            rows[2].1.push(parse_rate(&lines, |l| {
                scratch.clear();
                scratch.extend_from_slice(l);
                simd_json::serde::from_slice::<Plain<'_>>(&mut scratch).is_ok()
            }));
            rows[3].1.push(parse_rate(&lines, |l| parse_event(l).is_ok()));
        }
        rows[4].1.push(user_path_rate(&bin, &events, &scenarios, n, &[]));
        if let Some(b) = baseline.as_deref().filter(|_| !only_all) {
            rows[5].1.push(user_path_rate(b, &events, &scenarios, n, &[]));
        }
        rows[6].1.push(user_path_rate(&bin, &events, &scenarios, n, &["--job", "all"]));
        if let Some(b) = &baseline {
            rows[7].1.push(user_path_rate(b, &events, &scenarios, n, &["--job", "all"]));
        }
    }
    let base = if only_all { median(rows[4].1.clone()) } else { median(rows[0].1.clone()) };
    let vs = if only_all { "vs hot" } else { "vs serde" };
    println!("{:<66} {:>12} {:>10}   runs (k events/s)", "path", "events/s", vs);
    for (name, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        let m = median(v.clone());
        let all: Vec<String> = v.iter().map(|r| format!("{:.0}", r / 1e3)).collect();
        println!("{name:<66} {m:>12.0} {:>9.2}x   {}", m / base, all.join(" "));
    }
    let hot = median(rows[4].1.clone());
    println!("--job all / hot score alone: {:.1}% (target: --job all >= 600,000 events/s)", 100.0 * median(rows[6].1.clone()) / hot);
    // With a Redis (bench.sh's stack exports REDIS_URL): one `--job all` run that also writes to
    // it, and the commands it sent per second.
    if let Ok(url) = std::env::var("RTSCORE_BENCH_REDIS_URL").or_else(|_| std::env::var("REDIS_URL")) {
        let (rate, calls, per_s) = redis_row(&bin, &events, &scenarios, n, &url);
        let top: Vec<String> = calls.iter().take(6).map(|(c, n)| format!("{c} {n}")).collect();
        println!("{:<66} {rate:>12.0} {:>9.2}x   1 run", "user path, --job all, JSONL + Redis", rate / base);
        println!("  Redis: {per_s:.0} commands/s over the run ({})", top.join(", "));
    }
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
