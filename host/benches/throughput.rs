//! `cargo bench -p rtscore --bench throughput`: one run, side by side, printing a table.
//!
//! Rows: the parse-and-validate ceiling (no state), and the full pipeline from memory (parse +
//! window + score + top-N + JSONL serialisation to a null writer), for `--job item_hot_score`
//! with the built-in formula, with two declared features (`hot_score.features`: a sum and a
//! distinct count) on every scenario, with every scenario scored by the `decay-weighted` plugin, and with
//! a shadow candidate on every scenario (each window scored twice and compared, docs/rollout.md),
//! and for `--job all`. Workload: deterministic, 2 tenants, 6 scenarios with different geometry,
//! weights and lambdas, Zipf item popularity over 1M items, the eight seed actions, up to 3 s of
//! disorder. `RTSCORE_BENCH_EVENTS` sets the event count (default 2,000,000); `RTSCORE_BENCH_ONLY`
//! (builtin, features, plugin, shadow or all) runs the ceiling and that one row, for profiling. The
//! built-in, features and plugin rows are medians of five alternated runs each.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::config::{ScenarioConfig, ScenarioKey, parse_scenario};
use rtscore::event::RecordBatch;
use rtscore::event::parse_event;
use rtscore::output::Output;
use rtscore::pipeline::{JobSelection, Pipeline, PipelineOptions};
use rtscore::plugin::PluginEngine;
use rtscore::sinks::jsonl::JsonlSink;
use rtscore::sources::generator::EventMaker;
use rtscore_testkit::plugins;

const T0: i64 = 1_767_225_600_000;
const ITEMS: u64 = 1_000_000;
const BATCH: usize = 4096;

fn scenarios() -> Vec<Arc<ScenarioConfig>> {
    scenarios_with(None)
}

/// The bench scenarios with a shadow candidate on each.
fn shadowed_scenarios() -> Vec<Arc<ScenarioConfig>> {
    scenarios_with(Some(serde_json::json!({"hot_score": {"action_weights": {"purchase": 30.0, "click": 4.0}, "decay_lambda": 1.0}})))
}

/// The bench scenarios, each declaring two features (`hot_score.features`): watch time summed
/// over views and distinct users. `RTSCORE_BENCH_FEATURES=sum` or `distinct` keeps one of them,
/// to see what each costs.
fn featured_scenarios() -> Vec<Arc<ScenarioConfig>> {
    let sum = serde_json::json!({"name": "watch", "op": "sum", "field": "watch_time_ms", "actions": ["view"]});
    let distinct = serde_json::json!({"name": "viewers", "op": "distinct", "field": "user_id"});
    let features = match std::env::var("RTSCORE_BENCH_FEATURES").as_deref() {
        Ok("sum") => vec![sum],
        Ok("distinct") => vec![distinct],
        _ => vec![sum, distinct],
    };
    scenarios_with(None)
        .into_iter()
        .map(|c| {
            let mut c = (*c).clone();
            let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"features": features}}}});
            c.hot_score.features = parse_scenario(&doc).expect("valid features").hot_score.features;
            Arc::new(c)
        })
        .collect()
}

/// The bench scenarios, each with `candidate` (if any) beside its live config.
fn scenarios_with(candidate: Option<serde_json::Value>) -> Vec<Arc<ScenarioConfig>> {
    let specs = [
        ("shop", "home", 60, 15, 0.1),
        ("shop", "search", 30, 10, 0.0),
        ("shop", "cart", 120, 30, 0.7),
        ("video", "feed", 60, 5, 2.0),
        ("video", "trending", 20, 5, 5.0),
        ("video", "related", 240, 60, 0.05),
    ];
    specs
        .iter()
        .map(|(t, s, w, sl, l)| {
            let mut doc = serde_json::json!({"tenant_id": t, "scenario_id": s, "config": {"realtime_compute": {"hot_score": {
                "window_size_minutes": w, "window_slide_minutes": sl, "decay_lambda": l, "top_n": 100}}}});
            if let Some(c) = &candidate {
                doc["candidate"] = c.clone();
            }
            Arc::new(parse_scenario(&doc).expect("valid bench scenario"))
        })
        .collect()
}

fn workload(n: usize, keys: Vec<ScenarioKey>) -> Vec<RecordBatch> {
    let mut maker = EventMaker::new(keys, ITEMS, 7);
    // Six hours of event time across the run.
    let span = 6 * 3_600_000i64;
    let mut batches = Vec::new();
    let mut batch = RecordBatch::with_capacity(BATCH, BATCH * 220);
    for i in 0..n {
        batch.push(maker.next_event(T0 + span * i as i64 / n as i64));
        if batch.len() == BATCH {
            batches.push(std::mem::replace(&mut batch, RecordBatch::with_capacity(BATCH, BATCH * 220)));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Row {
    name: String,
    events_per_s: f64,
    note: String,
}

fn parse_only(batches: &[RecordBatch]) -> Row {
    let start = Instant::now();
    let mut ok = 0usize;
    for b in batches {
        for rec in b.iter() {
            ok += usize::from(parse_event(rec).is_ok());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Row { name: "parse + validate only (ceiling)".into(), events_per_s: ok as f64 / secs, note: String::new() }
}

/// Which formula scores the hot windows.
#[derive(Clone, Copy, PartialEq)]
enum Formula {
    Builtin,
    /// The `decay-weighted` plugin (same results), one sandboxed instance per scenario.
    Plugin,
}

fn full(batches: &[RecordBatch], cfgs: &[Arc<ScenarioConfig>], jobs: JobSelection, formula: Formula, label: &str) -> Row {
    let mut p = Pipeline::new(PipelineOptions { jobs, ..PipelineOptions::default() });
    for c in cfgs {
        p.apply_config(&c.key, Some(c.clone()));
    }
    if formula == Formula::Plugin {
        let engine = PluginEngine::new(SandboxLimits::default(), Default::default()).expect("plugin engine");
        let compiled = engine.compile(&plugins::module("decay-weighted")).expect("compile decay-weighted");
        for c in cfgs {
            let instance =
                engine.instantiate(compiled.clone(), "decay-weighted@0.1.0", &serde_json::Value::Null).expect("instantiate decay-weighted");
            p.hot_job_mut().scenario_mut(&c.key).expect("scenario configured").scorer.install(instance);
        }
    }
    let mut sink = JsonlSink::create("/dev/null".as_ref()).expect("open /dev/null");
    let (mut out, mut rejects) = (Vec::new(), Vec::new());
    let mut emitted = 0usize;
    let mut profiles = 0usize;
    let mut max_buckets = 0usize;
    let mut bytes_at_max = 0usize;
    let start = Instant::now();
    for (n, b) in batches.iter().enumerate() {
        p.process(b, &mut out, &mut rejects);
        emitted += out.iter().filter(|o| matches!(o, Output::Hot(_))).count();
        profiles += out.iter().filter(|o| matches!(o, Output::Profile(_))).count();
        sink.write(&out).expect("write sink");
        out.clear();
        // Sampled, so the measurement does not weigh on the measured pipeline.
        if n % 32 != 0 {
            continue;
        }
        let buckets: usize = p.hot_job().scenarios().map(|s| s.windows.bucket_count()).sum();
        if buckets > max_buckets {
            max_buckets = buckets;
            bytes_at_max = p.hot_job().scenarios().map(|s| s.windows.state_bytes()).sum();
        }
    }
    if formula == Formula::Plugin {
        // A plugin that fell back would make this row the built-in's in disguise.
        for s in p.hot_job().scenarios() {
            assert_eq!(s.scorer.state().name(), "active", "plugin not scoring: {:?}", s.scorer.state().reason());
        }
    }
    // What a snapshot of the hot-score state costs the pipeline thread at this size (taken
    // every --snapshot-interval-ms in Kafka mode): export (a copy) and encode, not timed above.
    let snap_started = Instant::now();
    let snap_bytes: usize = cfgs
        .iter()
        .filter_map(|c| p.hot_job().export_state(&c.key))
        .map(|st| rtscore::snapshot::codec::encode(&st).expect("encode snapshot").len())
        .sum();
    let snap_ms = snap_started.elapsed().as_secs_f64() * 1e3;
    let (users, user_bytes) = p.profile_job().totals();
    p.finish(&mut out);
    sink.write(&out).expect("write sink");
    let secs = start.elapsed().as_secs_f64() - snap_ms / 1e3;
    let events = p.stats().events_in as f64;
    let mut note = format!(
        "{emitted} hot windows; peak {max_buckets} (item, bucket) pairs at {:.0} B each",
        bytes_at_max as f64 / max_buckets.max(1) as f64
    );
    note += &format!("; hot-state snapshot at the end {:.1} MB in {snap_ms:.0} ms", snap_bytes as f64 / 1e6);
    if users > 0 {
        note += &format!("; {profiles} profile writes; {users} users at {:.0} B each", user_bytes as f64 / users as f64);
    }
    Row { name: label.into(), events_per_s: events / secs, note }
}

/// Alternated runs of the built-in and plugin rows.
const ROUNDS: usize = 5;

fn median(mut rows: Vec<Row>) -> Row {
    rows.sort_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s));
    let n = rows.len();
    let mut row = rows.swap_remove(n / 2);
    row.name += &format!(" (median of {n})");
    row
}

fn main() {
    // `cargo bench` passes --bench; this binary takes no flags.
    let n: usize = std::env::var("RTSCORE_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let cfgs = scenarios();
    let keys: Vec<ScenarioKey> = cfgs.iter().map(|c| c.key.clone()).collect();
    eprintln!("generating {n} events ...");
    let batches = workload(n, keys);
    let bytes: usize = batches.iter().map(RecordBatch::bytes_len).sum();
    eprintln!("{:.1} MB of JSON; running ...", bytes as f64 / 1e6);

    let ceiling = parse_only(&batches);
    if let Ok(only) = std::env::var("RTSCORE_BENCH_ONLY") {
        // One row alone, for profiling (`perf record`) without the others mixed in.
        let cfgs = match only.as_str() {
            "shadow" => shadowed_scenarios(),
            "features" => featured_scenarios(),
            _ => cfgs,
        };
        let (jobs, formula) = match only.as_str() {
            "builtin" | "shadow" | "features" => (JobSelection::ItemHotScore, Formula::Builtin),
            "plugin" => (JobSelection::ItemHotScore, Formula::Plugin),
            "all" => (JobSelection::All, Formula::Builtin),
            other => panic!("RTSCORE_BENCH_ONLY={other}: expected builtin, plugin, shadow, features or all"),
        };
        let row = full(&batches, &cfgs, jobs, formula, &only);
        println!(
            "| ceiling | {:.0} |\n| {} | {:.0} | {:.0}% | {} |",
            ceiling.events_per_s,
            row.name,
            row.events_per_s,
            100.0 * row.events_per_s / ceiling.events_per_s,
            row.note
        );
        return;
    }
    // Built-in and plugin alternate, five runs each, medians reported: on a shared machine a
    // single pair of runs can land in different load and swing the ratio either way.
    let featured = featured_scenarios();
    let (mut hots, mut plugins, mut feats) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        hots.push(full(&batches, &cfgs, JobSelection::ItemHotScore, Formula::Builtin, "full pipeline, item_hot_score (built-in)"));
        feats.push(full(
            &batches,
            &featured,
            JobSelection::ItemHotScore,
            Formula::Builtin,
            "full pipeline, item_hot_score + 2 declared features",
        ));
        plugins.push(full(
            &batches,
            &cfgs,
            JobSelection::ItemHotScore,
            Formula::Plugin,
            "full pipeline, item_hot_score (decay-weighted plugin)",
        ));
    }
    let (hot, plugin, feat) = (median(hots), median(plugins), median(feats));
    let shadowed = shadowed_scenarios();
    let shadow =
        full(&batches, &shadowed, JobSelection::ItemHotScore, Formula::Builtin, "full pipeline, item_hot_score + shadow candidate");
    let all = full(&batches, &cfgs, JobSelection::All, Formula::Builtin, "full pipeline, --job all");

    println!("\n| path | events/s (1 core) | vs ceiling | notes |");
    println!("|---|---:|---:|---|");
    for r in [&ceiling, &hot, &feat, &plugin, &shadow, &all] {
        println!("| {} | {:.0} | {:.0}% | {} |", r.name, r.events_per_s, 100.0 * r.events_per_s / ceiling.events_per_s, r.note);
    }
    println!("\nplugin path / built-in: {:.0}% (target >= 85%)", 100.0 * plugin.events_per_s / hot.events_per_s);
    println!("2 declared features / none: {:.0}% (target >= 85%)", 100.0 * feat.events_per_s / hot.events_per_s);
    println!("\n{n} events, {:.1} MB JSON, peak RSS {:.0} MB (includes the in-memory workload)", bytes as f64 / 1e6, peak_rss_mb());
}
