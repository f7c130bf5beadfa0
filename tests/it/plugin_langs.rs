//! The Python and JavaScript ports of the reference plugins (issue 22) in the host's sandbox:
//! they load with the same engine, limits and grants as the Rust modules, score what the Rust
//! modules score within DESIGN's tolerance, report their errors the same way, and their
//! compiled code is read back from the disk cache by a later engine (a restart).

use std::sync::Arc;

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::config::tenant::TenantQuotas;
use rtscore::plugin::memory::TenantMemory;
use rtscore::plugin::{CompiledPlugin, PluginEngine, PluginError, PluginInstance};
use rtscore::scoring::{WindowBatch, builtin};
use rtscore_testkit::plugins::{compile_cache_dir, lang_module, module, random_batch, rel_diff};
use serde_json::json;

/// DESIGN's tolerance on a formula's result (relative); the ports are far inside it.
const TOLERANCE: f64 = 1e-9;

/// One engine for the suite's tests (they run in parallel): each component is compiled, or read
/// from the shared disk cache, once.
fn engine() -> PluginEngine {
    static ENGINE: std::sync::OnceLock<PluginEngine> = std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| {
            PluginEngine::with_disk_cache(SandboxLimits::default(), Default::default(), Some(&compile_cache_dir())).expect("engine")
        })
        .clone()
}

fn compile(engine: &PluginEngine, name: &str) -> Arc<CompiledPlugin> {
    let bytes = if name.ends_with("-py") || name.ends_with("-js") { lang_module(name) } else { module(name) };
    engine.compile(&bytes).unwrap_or_else(|e| panic!("compile {name}: {e}"))
}

fn instance(engine: &PluginEngine, name: &str, params: serde_json::Value) -> PluginInstance {
    let compiled = compile(engine, name);
    engine.instantiate(compiled, format!("{name}@0.1.0"), &params).unwrap_or_else(|e| panic!("instantiate {name}: {e}"))
}

fn score(inst: &mut PluginInstance, batch: &WindowBatch) -> Result<Vec<f64>, PluginError> {
    let mut out = Vec::new();
    inst.score(batch, &mut out).map(|()| out)
}

/// `b` with the two features watch-heat reads, one value per item.
fn with_watch_features(mut b: WindowBatch, seed: u64) -> WindowBatch {
    let n = b.item_count();
    let watch: Vec<f64> = (0..n).map(|k| ((k as u64 * 7919 + seed) % 200_000) as f64).collect();
    let duration: Vec<f64> = (0..n).map(|k| if k % 5 == 0 { 0.0 } else { 20_000.0 + (k % 9) as f64 * 5_000.0 }).collect();
    b.features = vec![
        rtscore::scoring::FeatureColumn { name: "watch_ms".into(), values: rtscore::scoring::FeatureValues::Number(watch) },
        rtscore::scoring::FeatureColumn { name: "duration_ms".into(), values: rtscore::scoring::FeatureValues::Number(duration) },
    ];
    b
}

#[test]
fn python_and_javascript_ports_score_what_the_rust_modules_score() {
    let engine = engine();
    for lang in ["py", "js"] {
        let mut dw = instance(&engine, &format!("decay-weighted-{lang}"), json!(null));
        let mut rust_dw = instance(&engine, "decay-weighted", json!(null));
        let mut wh = instance(&engine, &format!("watch-heat-{lang}"), json!({"completion_weight": 1.5}));
        let mut rust_wh = instance(&engine, "watch-heat", json!({"completion_weight": 1.5}));
        let mut expected = Vec::new();
        for seed in 0..12u64 {
            let items = [0, 1, 7, 100, 1000, 3000][seed as usize % 6];
            let batch = with_watch_features(random_batch(seed, items, 6), seed);
            builtin::score_batch(&batch, &mut expected);
            for (port, rust, what) in [(&mut dw, &mut rust_dw, "decay-weighted"), (&mut wh, &mut rust_wh, "watch-heat")] {
                let got = score(port, &batch).unwrap_or_else(|e| panic!("{what}-{lang} seed {seed}: {e}"));
                let want = score(rust, &batch).unwrap();
                assert_eq!(got.len(), want.len(), "{what}-{lang} seed {seed}");
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(rel_diff(*g, *w) <= TOLERANCE, "{what}-{lang} seed {seed} item {k}: {g} vs Rust {w}");
                }
            }
            let got = score(&mut dw, &batch).unwrap();
            for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(rel_diff(*g, *e) <= TOLERANCE, "decay-weighted-{lang} seed {seed} item {k}: {g} vs built-in {e}");
            }
        }
    }
}

#[test]
fn a_python_plugins_params_and_errors_reach_the_host_as_a_rust_plugins_do() {
    let engine = engine();
    let compiled = compile(&engine, "watch-heat-py");
    let err = engine.instantiate(compiled.clone(), "watch-heat-py@0.1.0", &json!({"completion_weight": -1})).unwrap_err();
    assert!(matches!(&err, PluginError::Configure(m) if m.contains("completion_weight must be in 0..=100")), "{err}");
    let err = engine.instantiate(compiled.clone(), "watch-heat-py@0.1.0", &json!({"completion_wieght": 1})).unwrap_err();
    assert!(matches!(&err, PluginError::Configure(m) if m.contains("unknown field `completion_wieght`")), "{err}");
    let err = engine.instantiate(compiled, "watch-heat-py@0.1.0", &json!({"completion_weight": "high"})).unwrap_err();
    assert!(matches!(&err, PluginError::Configure(m) if m.contains("expected float")), "{err}");
    // A malformed window is refused by the SDK's checks with the reason, not a trap.
    let mut inst = instance(&engine, "decay-weighted-py", json!({}));
    let mut bad = random_batch(1, 3, 2);
    bad.item_offsets[1] = 10_000;
    let err = score(&mut inst, &bad).unwrap_err();
    assert!(matches!(&err, PluginError::Guest(m) if m.contains("decrease") || m.contains("end at")), "{err}");
    // The instance keeps scoring afterwards.
    assert_eq!(score(&mut inst, &random_batch(2, 5, 2)).unwrap().len(), 5);
}

/// The budgets an interpreter module needs fit the defaults a tenant gets (docs/plugins.md,
/// "Python and JavaScript plugins"): module size, memory per instance and the tenant's pool,
/// and the CPU budget of a window of many items.
#[test]
fn a_python_module_fits_the_default_tenant_quotas() {
    let q = TenantQuotas::default();
    let engine = engine();
    for name in ["decay-weighted-py", "watch-heat-py"] {
        let bytes = lang_module(name);
        assert!(bytes.len() <= q.max_module_bytes, "{name}: {} bytes > the default max_module_bytes {}", bytes.len(), q.max_module_bytes);
        let compiled = compile(&engine, name);
        let pool = Arc::new(TenantMemory::new(q.max_plugin_memory_bytes));
        let limits = q.sandbox_limits(engine.limits());
        let mut inst = engine.instantiate_for_tenant(compiled, name, &json!(null), limits, Some(pool.clone())).unwrap();
        let after_instantiate = pool.used();
        assert!(after_instantiate <= q.max_instance_memory_bytes / 2, "{name}: {after_instantiate} bytes once instantiated");
        // 5 000 items of 2.5 rows on average in one window: within the default budget for that
        // many with room for a loaded machine (docs/plugins.md, "Budgets for an interpreter").
        let batch = random_batch(5, 5_000, 4);
        let scores = score(&mut inst, &batch).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(scores.len(), 5_000);
        assert!(pool.used() <= q.max_instance_memory_bytes, "{name}: {} bytes after a 5k-item window", pool.used());
        eprintln!(
            "{name}: {} bytes; {after_instantiate} B of memory instantiated, {} B after a 5k-item window",
            lang_module(name).len(),
            pool.used()
        );
    }
}

#[test]
fn a_new_engine_reads_the_compiled_python_component_from_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = lang_module("decay-weighted-py");
    // Seeded from the shared cache when it has the entry, so the module compiles once per
    // machine; else compiled here.
    let shared = engine();
    let compiled = shared.compile(&bytes).unwrap();
    let entry = |dir: &std::path::Path| {
        std::fs::read_dir(dir).unwrap().filter_map(Result::ok).find(|e| e.file_name().to_string_lossy().starts_with(compiled.sha256()))
    };
    let seeded = entry(&compile_cache_dir()).expect("the shared cache holds the entry of a module it compiled or loaded");
    std::fs::copy(seeded.path(), dir.path().join(seeded.file_name())).unwrap();

    let restarted = PluginEngine::with_disk_cache(SandboxLimits::default(), Default::default(), Some(dir.path())).unwrap();
    let started = std::time::Instant::now();
    let loaded = restarted.compile(&bytes).unwrap();
    assert!(loaded.from_disk_cache(), "read back, not compiled");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "loading took {:?}", started.elapsed());
    let mut inst = restarted.instantiate(loaded, "decay-weighted-py@0.1.0", &json!(null)).unwrap();
    let batch = random_batch(3, 50, 4);
    let mut expected = Vec::new();
    builtin::score_batch(&batch, &mut expected);
    let got = score(&mut inst, &batch).unwrap();
    assert!(got.iter().zip(&expected).all(|(g, e)| rel_diff(*g, *e) <= TOLERANCE));

    // A damaged entry is removed and compiled again: `plugin::disk_cache`'s unit tests.
}
