//! `cargo bench -p rtscore --bench throughput`: one run, side by side, printing a table.
//!
//! Rows: the parse-and-validate ceiling (no state), and the full pipeline from memory (parse +
//! window + score + top-N + JSONL serialisation to a null writer), for `--job item_hot_score`
//! with the built-in formula, with two declared features (`hot_score.features`: a sum and a
//! distinct count) on every scenario, with every scenario scored by the `decay-weighted`
//! plugin, and with a shadow candidate on every scenario (each window scored twice and
//! compared, docs/rollout.md), for `--job user_profile` with the built-in interests and with
//! the `dwell-affinity` profile plugin on every scenario, and for `--job all`. Workload:
//! deterministic, 2 tenants, 6 scenarios with different geometry, weights and lambdas, Zipf item
//! popularity over 1M items, the eight seed actions, up to 3 s of disorder.
//! `RTSCORE_BENCH_EVENTS` sets the event count (default 2,000,000).
//!
//! Compared rows run side by side in lockstep: two pipelines take each batch in turn (each
//! from its own copy of the events, so neither finds the batch in the cache the other just
//! filled), each timed on its own, `RTSCORE_BENCH_ROUNDS` times (default 5); medians and the
//! median of the per-round ratios are printed. Pairs: built-in and features, built-in and plugin, and the
//! profile job without and with its plugin.
//!
//! `RTSCORE_BENCH_ONLY` runs the ceiling and one comparison, `features`, `profile` or `langs`
//! (the built-in formula against `decay-weighted` as a Rust, Python and JavaScript module, issue
//! 22), `sizes` (the built-in row for catalogues of 10k, 1M and 10M items and for 1, 10 and 100
//! scenarios: events/s, bytes per (item, bucket) and the longest batch, to size a host; issue 21), or one row (`builtin`, `plugin`, `shadow`, `all`), for profiling. `RTSCORE_BENCH_ALONE=1` with
//! `features` or `profile` runs only the second side, once (for `perf record`).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::config::{ScenarioConfig, ScenarioKey, parse_scenario};
use rtscore::event::RecordBatch;
use rtscore::event::parse_event;
use rtscore::output::Output;
use rtscore::pipeline::{JobSelection, Pipeline, PipelineOptions, Reject};
use rtscore::plugin::PluginEngine;
use rtscore::sinks::jsonl::JsonlSink;
use rtscore::sources::generator::EventMaker;
use rtscore_testkit::plugins;

/// The allocator the `rtscore` binary runs with, so the in-memory rows measure the same code.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// The bench scenarios, each referencing the `dwell-affinity` profile plugin
/// (`user_profile.plugin`, default params) when `plugin`.
fn profiled_scenarios(plugin: bool) -> Vec<Arc<ScenarioConfig>> {
    let reference = serde_json::json!({"name": "dwell-affinity", "version": "0.1.0"});
    scenarios_with(None)
        .into_iter()
        .map(|c| {
            let mut c = (*c).clone();
            if plugin {
                let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"user_profile": {"plugin": reference}}}});
                c.user_profile.plugin = parse_scenario(&doc).expect("valid plugin reference").user_profile.plugin;
            }
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
    workload_over(n, keys, ITEMS, false)
}

/// `n` events over `keys`, item popularity Zipf over a catalogue of `items` (or uniform).
fn workload_over(n: usize, keys: Vec<ScenarioKey>, items: u64, uniform: bool) -> Vec<RecordBatch> {
    let mut maker = EventMaker::new(keys, items, 7);
    if uniform {
        maker = maker.with_uniform_items();
    }
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

/// This thread's CPU time so far, s (`/proc/thread-self/schedstat`, ns); NaN where unreadable.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
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
    /// Events per second of the pipeline thread's own CPU time: on a loaded machine this
    /// leaves out the time spent waiting for a core (not cache or memory contention).
    events_per_cpu_s: f64,
    note: String,
    /// Profile writes whose interests came from a profile plugin, and the plugin's calls.
    plugin_writes: u64,
    plugin_calls: u64,
    /// Hot windows emitted.
    windows: usize,
}

impl Row {
    fn new(name: impl Into<String>, events_per_s: f64) -> Self {
        Row {
            name: name.into(),
            events_per_s,
            events_per_cpu_s: f64::NAN,
            note: String::new(),
            plugin_writes: 0,
            plugin_calls: 0,
            windows: 0,
        }
    }
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
    Row::new("parse + validate only (ceiling)", ok as f64 / secs)
}

/// Which formula scores the hot windows.
#[derive(Clone, Copy, PartialEq)]
enum Formula {
    Builtin,
    /// A hot-score plugin (`decay-weighted` gives the built-in's results: as a Rust module, or
    /// its ports `decay-weighted-py` and `decay-weighted-js`), one sandboxed instance per scenario.
    Plugin(&'static str),
    /// The `dwell-affinity` profile plugin installed in every scenario's profile job (the
    /// scenarios must reference it).
    ProfilePlugin,
}

/// Calls of the `dwell-affinity` plugin so far (`rtscore_plugin_calls_total`), once
/// [`count_plugin_calls`] installed the recorder.
fn profile_plugin_calls() -> u64 {
    CALLS.get().map_or(0, |c| c.load(Ordering::Relaxed))
}

static CALLS: OnceLock<Arc<AtomicU64>> = OnceLock::new();

/// A metrics recorder that counts the `dwell-affinity` plugin's calls and drops the rest.
struct PluginCalls(Arc<AtomicU64>);

impl metrics::Recorder for PluginCalls {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let ours =
            key.name() == "rtscore_plugin_calls_total" && key.labels().any(|l| l.key() == "plugin" && l.value() == "dwell-affinity@0.1.0");
        if ours { metrics::Counter::from_arc(self.0.clone()) } else { metrics::Counter::noop() }
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Installs the recorder, so the profile plugin's calls are counted (the calls counter is taken
/// when a plugin is installed). Only before the profile rows: the rows before them run
/// without a recorder, as they always did.
fn count_plugin_calls() {
    CALLS.get_or_init(|| {
        let calls = Arc::new(AtomicU64::new(0));
        metrics::set_global_recorder(PluginCalls(calls.clone())).expect("no metrics recorder installed yet");
        calls
    });
}

/// One pipeline over the workload, timed batch by batch (so two can run in lockstep): parse,
/// window, score, top-N and JSONL serialisation to a null writer.
struct Run<'c> {
    p: Pipeline,
    cfgs: &'c [Arc<ScenarioConfig>],
    jobs: JobSelection,
    formula: Formula,
    label: String,
    sink: JsonlSink,
    out: Vec<Output>,
    rejects: Vec<Reject>,
    steps: usize,
    emitted: usize,
    profiles: usize,
    max_buckets: usize,
    bytes_at_max: usize,
    secs: f64,
    cpu_secs: f64,
    /// The longest single batch, in seconds: how long the pipeline can stop on one step.
    longest_step: f64,
    plugin_calls: u64,
}

/// `n` sandboxed instances of reference plugin `name` (version 0.1.0, default params), one
/// per scenario, from one compilation per process (a Python or JavaScript component takes
/// seconds to compile, and each round of a comparison makes new instances).
fn instances(name: &str, n: usize) -> Vec<rtscore::plugin::PluginInstance> {
    type Compiled = (PluginEngine, Arc<rtscore::plugin::CompiledPlugin>);
    static COMPILED: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let mut compiled = COMPILED.get_or_init(Default::default).lock().unwrap();
    let (engine, compiled) = compiled.entry(name.to_string()).or_insert_with(|| {
        let (bytes, limits) = if plugins::LANG_PLUGINS.contains(&name) {
            // An interpreter's window of tens of thousands of items is far past the default
            // budget (docs/plugins.md): this row measures its cost, not the budget.
            let path = plugins::lang_dir().join(format!("{name}@0.1.0.wasm"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (bytes, SandboxLimits { call_budget: Duration::from_secs(60), memory_bytes: 1 << 30, ..SandboxLimits::default() })
        } else {
            (plugins::module(name), SandboxLimits::default())
        };
        let engine = PluginEngine::new(limits, Default::default()).expect("plugin engine");
        let started = Instant::now();
        let compiled = engine.compile(&bytes).unwrap_or_else(|e| panic!("compile {name}: {e}"));
        eprintln!("compiled {name} in {:.1} s", started.elapsed().as_secs_f64());
        (engine, compiled)
    });
    (0..n)
        .map(|_| {
            engine
                .instantiate(compiled.clone(), format!("{name}@0.1.0"), &serde_json::Value::Null)
                .unwrap_or_else(|e| panic!("instantiate {name}: {e}"))
        })
        .collect()
}

impl<'c> Run<'c> {
    fn new(cfgs: &'c [Arc<ScenarioConfig>], jobs: JobSelection, formula: Formula, label: &str) -> Self {
        // Profiles encoded, as the runtime writes them.
        let mut p = Pipeline::new(PipelineOptions { jobs, encode_profiles: true, ..PipelineOptions::default() });
        for c in cfgs {
            p.apply_config(&c.key, Some(c.clone()));
        }
        if let Formula::Plugin(name) = formula {
            for (c, instance) in cfgs.iter().zip(instances(name, cfgs.len())) {
                p.hot_job_mut().scenario_mut(&c.key).expect("scenario configured").scorer.install(instance);
            }
        }
        if formula == Formula::ProfilePlugin {
            for (c, instance) in cfgs.iter().zip(instances("dwell-affinity", cfgs.len())) {
                p.profile_job_mut().scenario_mut(&c.key).expect("profile job configured").plugins.live.install(instance);
            }
        }
        Run {
            p,
            cfgs,
            jobs,
            formula,
            label: label.into(),
            sink: JsonlSink::create("/dev/null".as_ref()).expect("open /dev/null"),
            out: Vec::new(),
            rejects: Vec::new(),
            steps: 0,
            emitted: 0,
            profiles: 0,
            max_buckets: 0,
            bytes_at_max: 0,
            secs: 0.0,
            cpu_secs: 0.0,
            longest_step: 0.0,
            plugin_calls: 0,
        }
    }

    /// Processes one batch, timed.
    fn step(&mut self, b: &RecordBatch) {
        let (started, cpu_started, calls) = (Instant::now(), thread_cpu_s(), profile_plugin_calls());
        self.p.process(b, &mut self.out, &mut self.rejects);
        self.emitted += self.out.iter().filter(|o| matches!(o, Output::Hot(_))).count();
        self.profiles += self.out.iter().filter(|o| matches!(o, Output::Profile(_) | Output::EncodedProfile(_))).count();
        self.sink.write(&self.out).expect("write sink");
        self.out.clear();
        let took = started.elapsed().as_secs_f64();
        self.secs += took;
        self.longest_step = self.longest_step.max(took);
        self.cpu_secs += thread_cpu_s() - cpu_started;
        self.plugin_calls += profile_plugin_calls() - calls;
        self.rejects.clear();
        // Sampled, and outside the timed part.
        self.steps += 1;
        if self.steps % 32 == 1 {
            let buckets: usize = self.p.hot_job().scenarios().map(|s| s.windows.bucket_count()).sum();
            if buckets > self.max_buckets {
                self.max_buckets = buckets;
                self.bytes_at_max = self.p.hot_job().scenarios().map(|s| s.windows.state_bytes()).sum();
            }
        }
    }

    /// The end of the input (timed) and the row.
    fn finish(mut self) -> Row {
        let Run { cfgs, jobs, formula, .. } = self;
        if matches!(formula, Formula::Plugin(_)) {
            // A plugin that fell back would make this row the built-in's in disguise.
            for s in self.p.hot_job().scenarios() {
                assert_eq!(s.scorer.state().name(), "active", "plugin not scoring: {:?}", s.scorer.state().reason());
            }
        }
        // What a snapshot of the hot-score state costs the pipeline thread at this size (taken
        // every --snapshot-interval-ms in Kafka mode): export (a copy) and encode, not timed.
        let snap_started = Instant::now();
        let snap_bytes: usize = cfgs
            .iter()
            .filter_map(|c| self.p.hot_job().export_state(&c.key))
            .map(|st| rtscore::snapshot::codec::encode(&st).expect("encode snapshot").len())
            .sum();
        let snap_ms = snap_started.elapsed().as_secs_f64() * 1e3;
        let (users, user_bytes) = self.p.profile_job().totals();
        let (started, cpu_started, calls) = (Instant::now(), thread_cpu_s(), profile_plugin_calls());
        self.p.finish(&mut self.out);
        self.profiles += self.out.iter().filter(|o| matches!(o, Output::Profile(_) | Output::EncodedProfile(_))).count();
        self.sink.write(&self.out).expect("write sink");
        self.secs += started.elapsed().as_secs_f64();
        self.cpu_secs += thread_cpu_s() - cpu_started;
        self.plugin_calls += profile_plugin_calls() - calls;
        let (mut plugin_writes, mut fallback_writes) = (0, 0);
        for c in cfgs.iter().filter(|_| jobs.user_profile()) {
            let s = self.p.profile_job().scenario(&c.key).expect("profile job configured");
            plugin_writes += s.plugin_writes;
            fallback_writes += s.plugin_fallback_writes;
            if formula == Formula::ProfilePlugin {
                // A plugin that fell back would make this row the built-in's in disguise.
                assert_eq!(s.plugins.live.state().name(), "active", "profile plugin not active: {:?}", s.plugins.live.last_error);
            }
        }
        let events = self.p.stats().events_in as f64;
        let mut note = format!(
            "{} hot windows; peak {} (item, bucket) pairs at {:.0} B each",
            self.emitted,
            self.max_buckets,
            self.bytes_at_max as f64 / self.max_buckets.max(1) as f64
        );
        note += &format!("; hot-state snapshot at the end {:.1} MB in {snap_ms:.0} ms", snap_bytes as f64 / 1e6);
        if users > 0 {
            note += &format!("; {} profile writes; {users} users at {:.0} B each", self.profiles, user_bytes as f64 / users as f64);
        }
        if plugin_writes + fallback_writes > 0 {
            note += &format!("; {plugin_writes} profile writes from the plugin in {} calls, {fallback_writes} built-in", self.plugin_calls);
        }
        Row {
            name: self.label,
            events_per_s: events / self.secs,
            events_per_cpu_s: events / self.cpu_secs,
            note,
            plugin_writes,
            plugin_calls: self.plugin_calls,
            windows: self.emitted,
        }
    }
}

fn full(batches: &[RecordBatch], cfgs: &[Arc<ScenarioConfig>], jobs: JobSelection, formula: Formula, label: &str) -> Row {
    let mut run = Run::new(cfgs, jobs, formula, label);
    batches.iter().for_each(|b| run.step(b));
    run.finish()
}

/// Alternated runs per compared row (`RTSCORE_BENCH_ROUNDS`, default 5).
fn rounds() -> usize {
    rtscore_testkit::env_number("RTSCORE_BENCH_ROUNDS", 5).max(1)
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median run by events/s, named with the number of runs and their range, carrying the
/// median of the runs' events per CPU-second.
fn median(mut rows: Vec<Row>) -> Row {
    let cpu = median_of(rows.iter().map(|r| r.events_per_cpu_s).collect());
    rows.sort_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s));
    let n = rows.len();
    let (lo, hi) = (rows[0].events_per_s, rows[n - 1].events_per_s);
    let mut row = rows.swap_remove(n / 2);
    row.name += &format!(" (median of {n}, {:.0}k–{:.0}k)", lo / 1e3, hi / 1e3);
    row.events_per_cpu_s = cpu;
    row
}

/// Medians of per-round ratios b / a: by wall time and by CPU time.
#[derive(Clone, Copy)]
struct Ratio {
    wall: f64,
    cpu: f64,
}

/// `a` and `b` in lockstep, `rounds` times: both pipelines take each batch in turn, each
/// timed on its own, so both see the same load at the same moments (on a shared machine,
/// back-to-back whole runs saw loads that differed by 2x). Their medians, and the median of
/// the per-round ratios b / a.
fn side_by_side<'c>(rounds: usize, batches: &[RecordBatch], a: impl Fn() -> Run<'c>, b: impl Fn() -> Run<'c>) -> (Row, Row, Ratio) {
    let (mut ra, mut rb, mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Each side reads its own copy of the events: sharing one, the side that went second found
    // the batch in the cache the first had just filled, ~10 points of ratio in its favour (and
    // the median of an odd number of alternating rounds then leans to the side second in most).
    let copy = batches.to_vec();
    for round in 0..rounds {
        let (mut x, mut y) = (a(), b());
        for (batch, batch_copy) in batches.iter().zip(&copy) {
            // Alternate which side goes first, so neither always runs on the other's caches.
            if round % 2 == 0 {
                x.step(batch);
                y.step(batch_copy);
            } else {
                y.step(batch_copy);
                x.step(batch);
            }
        }
        let (x, y) = (x.finish(), y.finish());
        eprintln!(
            "round {}: {:.0} / {:.0} events/s = {:.1}% (per CPU-s {:.1}%)",
            round + 1,
            x.events_per_s,
            y.events_per_s,
            100.0 * y.events_per_s / x.events_per_s,
            100.0 * y.events_per_cpu_s / x.events_per_cpu_s
        );
        ratios.push(y.events_per_s / x.events_per_s);
        cpu_ratios.push(y.events_per_cpu_s / x.events_per_cpu_s);
        ra.push(x);
        rb.push(y);
    }
    (median(ra), median(rb), Ratio { wall: median_of(ratios), cpu: median_of(cpu_ratios) })
}

fn print_rows(ceiling: &Row, rows: &[&Row]) {
    println!("\n| path | events/s (1 core) | vs ceiling | events per CPU-s | notes |");
    println!("|---|---:|---:|---:|---|");
    for r in std::iter::once(ceiling).chain(rows.iter().copied()) {
        let cpu = if r.events_per_cpu_s.is_finite() { format!("{:.0}", r.events_per_cpu_s) } else { String::new() };
        println!("| {} | {:.0} | {:.0}% | {cpu} | {} |", r.name, r.events_per_s, 100.0 * r.events_per_s / ceiling.events_per_s, r.note);
    }
}

const FEATURES_ROW: &str = "full pipeline, item_hot_score + 2 declared features";
const BUILTIN_ROW: &str = "full pipeline, item_hot_score (built-in)";

/// Built-in vs two declared features, side by side.
fn compare_features(batches: &[RecordBatch], ceiling: &Row) {
    let (cfgs, featured) = (scenarios(), featured_scenarios());
    let builtin = || Run::new(&cfgs, JobSelection::ItemHotScore, Formula::Builtin, BUILTIN_ROW);
    let features = || Run::new(&featured, JobSelection::ItemHotScore, Formula::Builtin, FEATURES_ROW);
    let (hot, feat, ratio) = side_by_side(rounds(), batches, builtin, features);
    print_rows(ceiling, &[&hot, &feat]);
    print_features_ratio(&hot, &feat, ratio);
}

fn print_features_ratio(hot: &Row, feat: &Row, ratio: Ratio) {
    println!(
        "\ndeclared features / none: {:.1}% of the medians, {:.1}% median of per-round ratios; by CPU time {:.1}% (target >= 85%)",
        100.0 * feat.events_per_s / hot.events_per_s,
        100.0 * ratio.wall,
        100.0 * ratio.cpu
    );
}

/// The built-in formula against the same formula as a plugin in each language (issue 22): a
/// window is scored in one call, so what matters is the share of the pipeline's time. Each
/// language is its own lockstep pair with the built-in.
fn compare_langs(batches: &[RecordBatch], ceiling: &Row) {
    let cfgs = scenarios();
    let builtin = || Run::new(&cfgs, JobSelection::ItemHotScore, Formula::Builtin, BUILTIN_ROW);
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for (name, label) in [
        ("decay-weighted", "full pipeline, item_hot_score (decay-weighted, Rust)"),
        ("decay-weighted-py", "full pipeline, item_hot_score (decay-weighted-py, Python)"),
        ("decay-weighted-js", "full pipeline, item_hot_score (decay-weighted-js, JavaScript)"),
    ] {
        let plugged = || Run::new(&cfgs, JobSelection::ItemHotScore, Formula::Plugin(name), label);
        let (base, with, ratio) = side_by_side(rounds(), batches, builtin, plugged);
        if rows.is_empty() {
            rows.push(base);
        }
        rows.push(with);
        ratios.push((name, ratio));
    }
    print_rows(ceiling, &rows.iter().collect::<Vec<_>>());
    let events = batches.iter().map(RecordBatch::len).sum::<usize>() as f64;
    println!("\nplugin / built-in, median of per-round ratios (each language in its own lockstep pair with the built-in):");
    for ((name, ratio), row) in ratios.iter().zip(&rows[1..]) {
        let extra_s = (1.0 / row.events_per_cpu_s - 1.0 / rows[0].events_per_cpu_s) * events;
        println!(
            "  {name}: {:.1}% (by CPU time {:.1}%); {extra_s:.2} s of CPU more than the built-in over {events:.0} events, \
             {:.2} ms per window scored ({} windows)",
            100.0 * ratio.wall,
            100.0 * ratio.cpu,
            1e3 * extra_s / row.windows.max(1) as f64,
            row.windows
        );
    }
}

/// `n` bench scenarios: the six of [`scenarios`] repeated under new scenario ids.
fn many_scenarios(n: usize) -> Vec<Arc<ScenarioConfig>> {
    let base = scenarios();
    (0..n)
        .map(|i| {
            let mut c = (*base[i % base.len()]).clone();
            c.key = ScenarioKey::new(c.key.tenant_id.as_ref(), &format!("{}-{i}", c.key.scenario_id));
            Arc::new(c)
        })
        .collect()
}

/// The built-in row as the catalogue and the scenario count grow (issue 21 item 4): events/s
/// and bytes of window state per (item, bucket) at the peak, so a user can size a host. Each
/// row generates its own `n` events (Zipf s = 1.1 over the catalogue, as everywhere here), but
/// the last: `RTSCORE_BENCH_UNIFORM_EVENTS` (default 20M) events over 10M equally popular
/// items, so that the state holds the whole catalogue (a Zipf tail is never all seen).
fn sizes(n: usize) {
    let uniform_n: usize = rtscore_testkit::env_number("RTSCORE_BENCH_UNIFORM_EVENTS", 20_000_000);
    println!(
        "\n| catalogue (items) | popularity | scenarios | events | distinct items seen | events/s (1 core) | events per CPU-s | peak (item, bucket) pairs | bytes per pair | longest batch (ms) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let grid = [
        (10_000u64, 6usize, n, false),
        (1_000_000, 6, n, false),
        (10_000_000, 6, n, false),
        (1_000_000, 1, n, false),
        (1_000_000, 10, n, false),
        (1_000_000, 100, n, false),
        (10_000_000, 6, uniform_n, true),
    ];
    for (items, count, events, uniform) in grid {
        let cfgs = many_scenarios(count);
        let batches = workload_over(events, cfgs.iter().map(|c| c.key.clone()).collect(), items, uniform);
        let seen = distinct_items(&batches);
        let mut run = Run::new(&cfgs, JobSelection::ItemHotScore, Formula::Builtin, "sizes");
        for b in &batches {
            run.step(b);
        }
        let (pairs, bytes, longest) = (run.max_buckets, run.bytes_at_max, run.longest_step);
        let row = run.finish();
        let popularity = if uniform { "uniform" } else { "Zipf 1.1" };
        println!(
            "| {items} | {popularity} | {count} | {events} | {seen} | {:.0} | {:.0} | {pairs} | {:.0} | {:.0} |",
            row.events_per_s,
            row.events_per_cpu_s,
            bytes as f64 / pairs.max(1) as f64,
            longest * 1e3
        );
    }
}

/// Distinct item ids in `batches` (not timed).
fn distinct_items(batches: &[RecordBatch]) -> usize {
    let mut seen = std::collections::HashSet::new();
    for b in batches {
        for line in b.iter() {
            if let Ok(ev) = parse_event(line) {
                seen.insert(ev.item_id.to_string());
            }
        }
    }
    seen.len()
}

const PROFILE_ROW: &str = "--job user_profile, built-in interests";
const PROFILE_PLUGIN_ROW: &str = "--job user_profile, dwell-affinity plugin";

/// The profile job without and with the `dwell-affinity` plugin, side by side on the same
/// events, and what the plugin adds per event, per call and per user update.
fn compare_profile(batches: &[RecordBatch], ceiling: &Row) {
    count_plugin_calls();
    let (plain, referenced) = (profiled_scenarios(false), profiled_scenarios(true));
    let builtin = || Run::new(&plain, JobSelection::UserProfile, Formula::Builtin, PROFILE_ROW);
    let plugin = || Run::new(&referenced, JobSelection::UserProfile, Formula::ProfilePlugin, PROFILE_PLUGIN_ROW);
    let (base, with, ratio) = side_by_side(rounds(), batches, builtin, plugin);
    // Referenced but never loaded: the host keeps each user's events for the plugin and falls
    // back at every write. Separates that bookkeeping from the calls themselves.
    let kept = full(
        batches,
        &referenced,
        JobSelection::UserProfile,
        Formula::Builtin,
        "--job user_profile, plugin referenced, not loaded (1 run)",
    );
    print_rows(ceiling, &[&base, &with, &kept]);
    let events = batches.iter().map(RecordBatch::len).sum::<usize>() as f64;
    // CPU time: on a loaded machine wall time also counts the waits for a core.
    let extra_ns = 1e9 / with.events_per_cpu_s - 1e9 / base.events_per_cpu_s;
    let keep_ns = 1e9 / kept.events_per_cpu_s - 1e9 / base.events_per_cpu_s;
    println!(
        "\ndwell-affinity: {:.1}% of the built-in profile job ({:.1}% median of per-round ratios; by CPU time {:.1}%); \
         +{extra_ns:.0} ns of CPU per event (of which ~{keep_ns:.0} ns keeping events for it), {:.1} µs per call \
         ({} calls, {:.0} users each), {:.0} ns per user update",
        100.0 * with.events_per_s / base.events_per_s,
        100.0 * ratio.wall,
        100.0 * ratio.cpu,
        extra_ns * events / with.plugin_calls.max(1) as f64 / 1e3,
        with.plugin_calls,
        with.plugin_writes as f64 / with.plugin_calls.max(1) as f64,
        extra_ns * events / with.plugin_writes.max(1) as f64,
    );
}

fn main() {
    // `cargo bench` passes --bench; this binary takes no flags.
    let n: usize = rtscore_testkit::env_number("RTSCORE_BENCH_EVENTS", 2_000_000);
    let cfgs = scenarios();
    let keys: Vec<ScenarioKey> = cfgs.iter().map(|c| c.key.clone()).collect();
    eprintln!("generating {n} events ...");
    let batches = workload(n, keys);
    let bytes: usize = batches.iter().map(RecordBatch::bytes_len).sum();
    eprintln!("{:.1} MB of JSON; running ...", bytes as f64 / 1e6);

    let ceiling = parse_only(&batches);
    if let Ok(only) = std::env::var("RTSCORE_BENCH_ONLY") {
        let alone = std::env::var("RTSCORE_BENCH_ALONE").is_ok_and(|v| v == "1");
        let row = match (only.as_str(), alone) {
            ("features", false) => return compare_features(&batches, &ceiling),
            ("profile", false) => return compare_profile(&batches, &ceiling),
            // One row alone, for profiling (`perf record`) without the others mixed in.
            ("features", true) => full(&batches, &featured_scenarios(), JobSelection::ItemHotScore, Formula::Builtin, FEATURES_ROW),
            ("profile", true) => {
                count_plugin_calls();
                full(&batches, &profiled_scenarios(true), JobSelection::UserProfile, Formula::ProfilePlugin, PROFILE_PLUGIN_ROW)
            }
            ("builtin", _) => full(&batches, &cfgs, JobSelection::ItemHotScore, Formula::Builtin, "builtin"),
            ("shadow", _) => full(&batches, &shadowed_scenarios(), JobSelection::ItemHotScore, Formula::Builtin, "shadow"),
            ("plugin", _) => full(&batches, &cfgs, JobSelection::ItemHotScore, Formula::Plugin("decay-weighted"), "plugin"),
            ("langs", _) => return compare_langs(&batches, &ceiling),
            ("sizes", _) => return sizes(n),
            ("all", _) => full(&batches, &cfgs, JobSelection::All, Formula::Builtin, "all"),
            (other, _) => panic!("RTSCORE_BENCH_ONLY={other}: expected builtin, plugin, shadow, features, profile, langs, sizes or all"),
        };
        return print_rows(&ceiling, &[&row]);
    }
    // Built-in against features, then against the plugin, each pair in lockstep, medians
    // reported: on a shared machine whole runs one after the other can land in different load.
    let featured = featured_scenarios();
    let builtin = || Run::new(&cfgs, JobSelection::ItemHotScore, Formula::Builtin, BUILTIN_ROW);
    let features = || Run::new(&featured, JobSelection::ItemHotScore, Formula::Builtin, FEATURES_ROW);
    let (hot, feat, feat_ratio) = side_by_side(rounds(), &batches, builtin, features);
    let plugged = || {
        Run::new(
            &cfgs,
            JobSelection::ItemHotScore,
            Formula::Plugin("decay-weighted"),
            "full pipeline, item_hot_score (decay-weighted plugin)",
        )
    };
    let (_, plugin, plugin_ratio) = side_by_side(rounds(), &batches, builtin, plugged);
    let shadowed = shadowed_scenarios();
    let shadow =
        full(&batches, &shadowed, JobSelection::ItemHotScore, Formula::Builtin, "full pipeline, item_hot_score + shadow candidate");
    let all = full(&batches, &cfgs, JobSelection::All, Formula::Builtin, "full pipeline, --job all");

    print_rows(&ceiling, &[&hot, &feat, &plugin, &shadow, &all]);
    println!(
        "\nplugin path / built-in: {:.0}% median of per-round ratios, by CPU time {:.0}% (target >= 85%)",
        100.0 * plugin_ratio.wall,
        100.0 * plugin_ratio.cpu
    );
    print_features_ratio(&hot, &feat, feat_ratio);
    // Last: it installs the metrics recorder, which the rows above never had.
    compare_profile(&batches, &ceiling);
    println!("\n{n} events, {:.1} MB JSON, peak RSS {:.0} MB (includes the in-memory workload)", bytes as f64 / 1e6, peak_rss_mb());
}
