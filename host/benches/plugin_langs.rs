//! The cost of a plugin's language (issue 22): the same two formulas, `decay-weighted` and
//! `watch-heat`, as the Rust module and its Python (componentize-py) and JavaScript
//! (componentize-js) ports, side by side: module size, compile time (cold, and read back from
//! the disk cache as a restarted host does), instantiate + configure time, linear memory of an
//! instance (after instantiation and after the largest window), and median ns per item of a
//! window's `score` call at several window sizes. Prints markdown tables (docs/benchmarks.md
//! quotes them).
//!
//! `cargo bench -p rtscore --bench plugin_langs` (the ports are built by
//! scripts/build-plugins.sh, or here through the testkit; the toolchains come from
//! scripts/setup.sh). `PLUGIN_LANGS_QUICK=1` runs the smaller windows only.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::plugin::memory::TenantMemory;
use rtscore::plugin::{PluginEngine, PluginInstance};
use rtscore::scoring::{FeatureColumn, FeatureValues, WindowBatch};
use rtscore_testkit::plugins;

const ROWS_PER_ITEM: usize = 3;

/// A window of `items` items with [`ROWS_PER_ITEM`] rows each and the two features watch-heat
/// reads, with the window context the pipeline gives a 0.2.0 plugin.
fn batch(items: usize) -> WindowBatch {
    let mut b = plugins::fixed_batch(items, ROWS_PER_ITEM);
    let watch = (0..items).map(|k| (k % 50) as f64 * 1_000.0).collect();
    let duration = (0..items).map(|k| 20_000.0 + (k % 9) as f64 * 5_000.0).collect();
    b.features = vec![
        FeatureColumn { name: "watch_ms".into(), values: FeatureValues::Number(watch) },
        FeatureColumn { name: "duration_ms".into(), values: FeatureValues::Number(duration) },
    ];
    b
}

/// Median ns per item over repeated runs of `f`, about `budget` of wall time in total.
fn ns_per_item(items: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 3 || (started.elapsed() < budget && samples.len() < 10_000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_nanos() as f64 / items.max(1) as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn bytes_of(module: &str) -> Vec<u8> {
    if module.ends_with("-py") || module.ends_with("-js") { plugins::lang_module(module) } else { plugins::module(module) }
}

fn mib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

fn limits() -> SandboxLimits {
    // Generous: this measures the cost, the budgets are checked by the tests.
    SandboxLimits { call_budget: Duration::from_secs(30), memory_bytes: 1 << 30, ..SandboxLimits::default() }
}

struct Setup {
    instance: PluginInstance,
    pool: Arc<TenantMemory>,
}

/// Compile cold, then read back from a fresh disk cache, then instantiate; prints one row.
fn setup(module: &str, params: &serde_json::Value) -> Setup {
    let bytes = bytes_of(module);
    let cache = tempfile::tempdir().unwrap();
    let cold = PluginEngine::with_disk_cache(limits(), Default::default(), Some(cache.path())).unwrap();
    let t = Instant::now();
    let compiled = cold.compile(&bytes).expect("compile");
    let compile = t.elapsed();
    assert!(!compiled.from_disk_cache());
    let warm = PluginEngine::with_disk_cache(limits(), Default::default(), Some(cache.path())).unwrap();
    let t = Instant::now();
    let compiled = warm.compile(&bytes).expect("load");
    let load = t.elapsed();
    assert!(compiled.from_disk_cache());
    let serialized = std::fs::read_dir(cache.path()).unwrap().filter_map(Result::ok).map(|e| e.metadata().unwrap().len()).sum::<u64>();
    let n = 10;
    let pool = Arc::new(TenantMemory::new(usize::MAX / 2));
    let t = Instant::now();
    for _ in 0..n {
        let i = warm.instantiate_for_tenant(compiled.clone(), module, params, limits(), Some(pool.clone())).expect("instantiate");
        black_box(i);
    }
    let instantiate = t.elapsed() / n;
    let pool = Arc::new(TenantMemory::new(usize::MAX / 2));
    let instance = warm.instantiate_for_tenant(compiled, module, params, limits(), Some(pool.clone())).expect("instantiate");
    println!(
        "| {module} | {} | {:.0} | {} | {:.0} | {:.1} | {} |",
        mib(bytes.len()),
        compile.as_secs_f64() * 1e3,
        mib(serialized as usize),
        load.as_secs_f64() * 1e3,
        instantiate.as_secs_f64() * 1e3,
        mib(pool.used()),
    );
    Setup { instance, pool }
}

fn main() {
    let quick = std::env::var_os("PLUGIN_LANGS_QUICK").is_some();
    let sizes: &[usize] = if quick { &[1, 100, 1_000] } else { &[1, 100, 1_000, 10_000, 100_000] };
    let formulas = [("decay-weighted", serde_json::Value::Null), ("watch-heat", serde_json::json!({"completion_weight": 1.0}))];
    println!("One-off costs per module (one process, 2 cores shared with whatever else runs):");
    println!(
        "| module | MiB | compile ms | compiled MiB | load from disk cache ms | instantiate + configure ms | memory after instantiate MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut setups = Vec::new();
    for (formula, params) in &formulas {
        for lang in ["", "-py", "-js"] {
            let module = format!("{formula}{lang}");
            setups.push((module.clone(), setup(&module, params)));
        }
    }
    let budget = Duration::from_millis(if quick { 300 } else { 1_500 });
    println!();
    println!("Median ns per item of one `score` call ({ROWS_PER_ITEM} rows per item), and memory after the largest window:");
    let header: Vec<String> = sizes.iter().map(|n| format!("{n} items")).collect();
    println!("| module | {} | memory after MiB |", header.join(" | "));
    println!("|---|{}---:|", "---:|".repeat(sizes.len()));
    let batches: Vec<WindowBatch> = sizes.iter().map(|&n| batch(n)).collect();
    let mut reference: Vec<Vec<f64>> = Vec::new();
    for (k, (module, s)) in setups.iter_mut().enumerate() {
        let mut cells = Vec::new();
        let mut out = Vec::new();
        for (j, b) in batches.iter().enumerate() {
            s.instance.score(b, &mut out).unwrap_or_else(|e| panic!("{module}: {e}"));
            // The ports agree with the Rust module (the first of each formula's three rows).
            if k % 3 == 0 {
                if j == 0 {
                    reference.clear();
                }
                reference.push(out.clone());
            } else {
                let want = &reference[j];
                assert!(out.iter().zip(want).all(|(g, w)| (g - w).abs() <= 1e-9 * w.abs().max(1e-300)), "{module} disagrees");
            }
            let ns = ns_per_item(b.item_count(), budget, || {
                s.instance.score(black_box(b), &mut out).expect("score");
            });
            cells.push(if ns >= 100.0 { format!("{ns:.0}") } else { format!("{ns:.1}") });
        }
        println!("| {module} | {} | {} |", cells.join(" | "), mib(s.pool.used()));
    }
}
