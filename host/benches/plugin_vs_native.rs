//! ns per scored item: the decay-weighted plugin through wasmtime vs `builtin::score_batch`,
//! the plugin under epoch vs fuel budgets, and the `test-floor` plugin (scores nothing) as the
//! floor every plugin pays for crossing the component boundary. Prints a table
//! (docs/benchmarks.md quotes it).
//!
//! `cargo bench -p rtscore --bench plugin_vs_native` (`RTSCORE_BENCH_ITEMS=1000,100000`: those sizes
//! only).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use rtscore::config::plugin_limits::{BudgetMode, SandboxLimits};
use rtscore::plugin::{PluginEngine, PluginInstance};
use rtscore::scoring::{WindowBatch, builtin};
use rtscore_testkit::plugins;

const SIZES: &[usize] = &[1, 100, 1_000, 10_000, 100_000];
const ROWS_PER_ITEM: usize = 3;

/// A batch of `items` items with exactly [`ROWS_PER_ITEM`] rows each.
fn batch(items: usize) -> WindowBatch {
    // As the pipeline hands it to a 0.2.0 plugin: with the window context and item ids.
    plugins::fixed_batch(items, ROWS_PER_ITEM)
}

/// Median ns per item of each of `fs` and the median of the per-round ratios of each to the
/// first, over rounds that run every one once in turn (the order rotating), about `budget` of
/// wall time in total. Interleaved, because this VM's speed drifts by tens of percent within
/// seconds: timing one side for a while and then the other made the ratio at 100k items swing
/// 1.4-2.4x between runs of the same build.
fn interleaved(items: usize, budget: Duration, fs: &mut [&mut dyn FnMut()]) -> (Vec<f64>, Vec<f64>) {
    fs.iter_mut().for_each(|f| f()); // warm-up
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); fs.len()];
    let started = Instant::now();
    let mut round = 0;
    while round < 5 || (started.elapsed() < budget && round < 10_000) {
        for k in 0..fs.len() {
            let at = (round + k) % fs.len();
            let t = Instant::now();
            fs[at]();
            samples[at].push(t.elapsed().as_nanos() as f64 / items.max(1) as f64);
        }
        round += 1;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios = samples.iter().map(|s| median(s.iter().zip(&samples[0]).map(|(x, base)| x / base).collect())).collect();
    (samples.into_iter().map(median).collect(), ratios)
}

fn plugin(crate_name: &str, mode: BudgetMode) -> PluginInstance {
    let limits =
        SandboxLimits { budget_mode: mode, call_budget: Duration::from_secs(5), memory_bytes: 512 << 20, ..SandboxLimits::default() };
    let engine = PluginEngine::new(limits, Default::default()).expect("engine");
    let compiled = engine.compile(&plugins::module(crate_name)).unwrap_or_else(|e| panic!("compile {crate_name}: {e}"));
    engine.instantiate(compiled, format!("{crate_name}@0.1.0"), &serde_json::Value::Null).expect("instantiate")
}

/// One-off costs: compiling the component (cached by sha256 afterwards) and instantiating it.
fn setup_costs() {
    let engine = PluginEngine::new(SandboxLimits::default(), Default::default()).expect("engine");
    let bytes = plugins::module("decay-weighted");
    let t = Instant::now();
    let compiled = engine.compile(&bytes).expect("compile decay-weighted");
    let compile = t.elapsed();
    let t = Instant::now();
    let n = 20;
    for _ in 0..n {
        black_box(engine.instantiate(compiled.clone(), "decay-weighted@0.1.0", &serde_json::Value::Null).expect("instantiate"));
    }
    let instantiate = t.elapsed() / n;
    println!(
        "module {} KiB: compile {:.0} ms, instantiate + configure {:.0} µs",
        bytes.len() / 1024,
        compile.as_secs_f64() * 1e3,
        instantiate.as_secs_f64() * 1e6
    );
}

fn main() {
    setup_costs();
    let epoch_mode = BudgetMode::Epoch { tick: Duration::from_millis(2) };
    let mut epoch = plugin("decay-weighted", epoch_mode);
    let mut fuel = plugin("decay-weighted", BudgetMode::Fuel { units_per_ms: 1_000_000 });
    let mut floor = plugin("test-floor", epoch_mode);
    let budget = Duration::from_millis(2800);
    println!(
        "decay-weighted plugin vs builtin::score_batch, {ROWS_PER_ITEM} rows per item, median ns per item; \
         the sides interleaved, the ratio the median of the per-round ratios"
    );
    println!("| items | builtin | plugin (epoch) | plugin (fuel) | floor (epoch) | epoch / builtin |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut out = Vec::new();
    // `RTSCORE_BENCH_ITEMS=10000,100000` runs those sizes only (for A/B runs of plugin builds).
    let sizes: Vec<usize> = match std::env::var("RTSCORE_BENCH_ITEMS") {
        Ok(v) => v.split(',').map(|n| n.trim().parse().expect("RTSCORE_BENCH_ITEMS: comma-separated item counts")).collect(),
        Err(_) => SIZES.to_vec(),
    };
    for n in sizes {
        let b = batch(n);
        let mut check = Vec::new();
        epoch.score(&b, &mut check).expect("plugin scores");
        builtin::score_batch(&b, &mut out);
        assert!(check.iter().zip(&out).all(|(a, e)| (a - e).abs() <= 1e-9 * e.abs().max(1e-300)), "plugin and builtin disagree");
        let mut outs: [Vec<f64>; 3] = Default::default();
        let [o1, o2, o3] = &mut outs;
        let (ns, ratios) = interleaved(
            n,
            budget,
            &mut [
                &mut || {
                    builtin::score_batch(black_box(&b), &mut out);
                    black_box(&out);
                },
                &mut || epoch.score(black_box(&b), o1).expect("plugin scores"),
                &mut || fuel.score(black_box(&b), o2).expect("plugin scores"),
                &mut || floor.score(black_box(&b), o3).expect("floor plugin scores"),
            ],
        );
        let [native, with_epoch, with_fuel, with_floor] = ns[..] else { unreachable!("four sides") };
        println!("| {n} | {native:.1} | {with_epoch:.1} | {with_fuel:.1} | {with_floor:.1} | {:.2}x |", ratios[1]);
    }
}
