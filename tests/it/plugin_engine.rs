//! Plugins through wasmtime: the reference plugins reproduce their formulas, broken plugins are
//! contained with the right error, the sandbox denies what it should.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::plugin::{CompiledPlugin, PluginEngine, PluginError, PluginInstance};
use rtscore::scoring::{WindowBatch, builtin};
use rtscore_testkit::plugins::{module, random_batch, rel_diff, simple_batch};
use serde_json::json;

fn test_limits() -> SandboxLimits {
    SandboxLimits { call_budget: Duration::from_millis(100), memory_bytes: 32 << 20, ..SandboxLimits::default() }
}

fn engine() -> PluginEngine {
    PluginEngine::new(test_limits(), Default::default()).expect("engine")
}

/// The test limits with a CPU budget no run reaches: for tests of the memory caps, which a
/// 100 ms budget could end first on a loaded machine (growing 32 MiB page by page is slow then).
fn memory_test_limits() -> SandboxLimits {
    SandboxLimits { call_budget: Duration::from_secs(30), ..test_limits() }
}

fn compile(engine: &PluginEngine, crate_name: &str) -> Arc<CompiledPlugin> {
    engine.compile(&module(crate_name)).unwrap_or_else(|e| panic!("compile {crate_name}: {e}"))
}

fn instance(engine: &PluginEngine, crate_name: &str, params: serde_json::Value) -> PluginInstance {
    let compiled = compile(engine, crate_name);
    engine.instantiate(compiled, format!("{crate_name}@0.1.0"), &params).unwrap_or_else(|e| panic!("instantiate {crate_name}: {e}"))
}

fn score(inst: &mut PluginInstance, batch: &WindowBatch) -> Result<Vec<f64>, PluginError> {
    let mut out = vec![123.0];
    inst.score(batch, &mut out).map(|()| out)
}

#[test]
fn decay_weighted_matches_the_builtin_formula_on_random_batches() {
    let engine = engine();
    let mut inst = instance(&engine, "decay-weighted", json!(null));
    let mut expected = Vec::new();
    for seed in 0..40u64 {
        let items = [0, 1, 7, 100, 1000][seed as usize % 5];
        let batch = random_batch(seed, items, 6);
        builtin::score_batch(&batch, &mut expected);
        let got = score(&mut inst, &batch).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(got.len(), expected.len(), "seed {seed}");
        for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(rel_diff(*g, *e) <= 1e-9, "seed {seed} item {k}: plugin {g} vs builtin {e}");
        }
    }
}

/// The module scores with WebAssembly SIMD (the guest SDK built with `+simd128`, two rows per
/// operation) and still gives the very bits the SDK's scalar code computes natively, item by
/// item: the same operations per lane, no fused multiply-add. Decays from 1 down to subnormal
/// and 0 (λ up to 900 / h).
#[test]
fn decay_weighted_scores_the_bits_the_sdk_computes_natively() {
    let engine = engine();
    let mut inst = instance(&engine, "decay-weighted", json!(null));
    for seed in 0..30u64 {
        let mut batch = random_batch(500 + seed, [1, 2, 3, 50, 999][seed as usize % 5], 7);
        if seed % 3 == 0 {
            batch.decay_lambda = [40.0, 900.0][seed as usize % 2];
        }
        let raw = rtscore_guest::RawBatch {
            window_start_ms: batch.window_start_ms,
            window_end_ms: batch.window_end_ms,
            actions: batch.actions.clone(),
            weights: batch.weights.clone(),
            decay_lambda: batch.decay_lambda,
            item_offsets: batch.item_offsets.clone(),
            row_action: batch.row_action.clone(),
            row_count: batch.row_count.clone(),
            row_age_mean_ms: batch.row_age_mean_ms.clone(),
            row_age_var_ms2: batch.row_age_var_ms2.clone(),
            item_ids: batch.item_ids.clone(),
            item_id_ends: batch.item_id_ends.clone(),
            slide_ms: batch.slide_ms,
            top_n: batch.top_n,
            tenant_id: batch.tenant_id.clone(),
            scenario_id: batch.scenario_id.clone(),
            features: Vec::new(),
        };
        let native = rtscore_guest::Batch::new(&raw).unwrap();
        let want: Vec<u64> = native.items().map(|item| item.decayed_score().to_bits()).collect();
        let got = score(&mut inst, &batch).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(got.iter().map(|s| s.to_bits()).collect::<Vec<_>>(), want, "seed {seed}");
    }
}

#[test]
fn gravity_produces_its_formula() {
    let engine = engine();
    let mut inst = instance(&engine, "gravity", json!({"gravity": 1.5}));
    let batch = random_batch(7, 200, 5);
    let got = score(&mut inst, &batch).unwrap();
    assert_eq!(got.len(), batch.item_count());
    for (k, &got) in got.iter().enumerate() {
        let (mut n, mut age_sum, mut points) = (0.0, 0.0, 0.0);
        for r in batch.item_rows(k) {
            let w = batch.weights[batch.row_action[r] as usize];
            if w != 0.0 {
                let c = f64::from(batch.row_count[r]);
                n += c;
                age_sum += c * batch.row_age_mean_ms[r];
                points += w * c;
            }
        }
        let want = if n == 0.0 { 0.0 } else { points / (age_sum / n / 3_600_000.0 + 2.0).powf(1.5) };
        assert!(rel_diff(got, want) < 1e-12, "item {k}: {got} vs {want}");
    }
}

#[test]
fn wilson_ctr_produces_its_formula() {
    let engine = engine();
    let mut inst = instance(&engine, "wilson-ctr", json!({"min_impressions": 5}));
    let batch = random_batch(11, 300, 6);
    let got = score(&mut inst, &batch).unwrap();
    let (imp, click) = (0u16, 2u16); // "impression", "click" in random_batch's action list
    assert_eq!(got.len(), batch.item_count());
    for (k, &got) in got.iter().enumerate() {
        let count = |a: u16| batch.item_rows(k).filter(|&r| batch.row_action[r] == a).map(|r| f64::from(batch.row_count[r])).sum::<f64>();
        let (n, c) = (count(imp), count(click));
        let want = if n < 5.0 || n == 0.0 {
            0.0
        } else {
            let (p, z) = ((c / n).min(1.0), 1.96_f64);
            let centre = p + z * z / (2.0 * n);
            let margin = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt();
            ((centre - margin) / (1.0 + z * z / n)).max(0.0)
        };
        assert!(rel_diff(got, want) < 1e-12, "item {k}: {got} vs {want} ({c} clicks / {n} impressions)");
    }
}

#[test]
fn trapping_plugin_is_reported_with_its_panic_message_and_recovers() {
    let engine = engine();
    let mut inst = instance(&engine, "test-trap", json!({"ok_calls": 1}));
    let batch = simple_batch(3);
    assert_eq!(score(&mut inst, &batch).unwrap(), vec![1.0, 2.0, 3.0]);
    match score(&mut inst, &batch) {
        Err(PluginError::Trap(msg)) => assert!(msg.contains("deliberate panic on call 2"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    // The poisoned instance is replaced by a fresh one (its call counter starts again), made on
    // a thread of its own from the moment of the trap.
    assert_eq!(score(&mut inst, &batch).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn a_tenant_over_its_cpu_budget_per_minute_scores_builtin_and_others_do_not() {
    use rtscore::config::ScenarioKey;
    use rtscore::plugin::cpu::CpuLedger;
    use rtscore::plugin::{ScenarioScorer, ScorerUsed};
    let engine = engine();
    let ledger = CpuLedger::default();
    let batch = simple_batch(3);
    let mut expected = Vec::new();
    builtin::score_batch(&batch, &mut expected);
    // evil: a spinning plugin (100 ms per call) under a 150 ms budget per minute.
    let evil_cpu = ledger.tenant("evil", Duration::from_millis(150));
    let mut evil = ScenarioScorer::new(ScenarioKey::new("evil", "s")).with_quarantine_after(100);
    evil.install(instance(&engine, "test-spin", json!(null)).with_cpu(evil_cpu.clone()));
    let good_cpu = ledger.tenant("good", Duration::from_millis(150));
    let mut good = ScenarioScorer::new(ScenarioKey::new("good", "s"));
    good.install(instance(&engine, "decay-weighted", json!(null)).with_cpu(good_cpu));
    let mut out = Vec::new();
    for _ in 0..2 {
        let o = evil.score(&batch, &mut out);
        assert_eq!(o.error.as_ref().map(PluginError::kind), Some("budget_exhausted"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(evil_cpu.used() >= Duration::from_millis(150), "{:?}", evil_cpu.used());
    // The minute's budget is spent: no plugin call at all, the built-in formula scores at once.
    let started = Instant::now();
    let o = evil.score(&batch, &mut out);
    assert!(started.elapsed() < Duration::from_millis(20), "{:?}", started.elapsed());
    assert_eq!((o.used, o.error.as_ref().map(PluginError::kind)), (ScorerUsed::Builtin, Some("tenant_cpu")));
    assert_eq!(out, expected);
    assert!(evil.state().to_string().contains("CPU budget"), "{}", evil.state());
    // Another tenant's plugin is not affected.
    let o = good.score(&batch, &mut out);
    assert_eq!((o.used, o.error), (ScorerUsed::Plugin("decay-weighted@0.1.0".into()), None));
}

#[test]
fn spinning_plugin_exhausts_its_budget() {
    let engine = engine();
    let mut inst = instance(&engine, "test-spin", json!(null));
    let started = Instant::now();
    let err = score(&mut inst, &simple_batch(2)).unwrap_err();
    assert!(matches!(err, PluginError::BudgetExhausted { .. }), "{err}");
    // 100 ms budget, 2 ms ticks: stopped well before a second.
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}

#[test]
fn allocating_plugin_hits_the_memory_cap() {
    let engine = PluginEngine::new(memory_test_limits(), Default::default()).expect("engine");
    let mut inst = instance(&engine, "test-oom", json!(null));
    let err = score(&mut inst, &simple_batch(2)).unwrap_err();
    assert_eq!(err, PluginError::MemoryExhausted { cap_bytes: 32 << 20 });
}

#[test]
fn a_tenants_instances_share_one_memory_pool() {
    use rtscore::plugin::memory::TenantMemory;
    let engine = PluginEngine::new(memory_test_limits(), Default::default()).expect("engine");
    let compiled = compile(&engine, "test-oom");
    let pooled = |pool: &Arc<TenantMemory>| {
        engine
            .instantiate_for_tenant(compiled.clone(), "test-oom@0.1.0", &json!(null), memory_test_limits(), Some(pool.clone()))
            .expect("instantiate")
    };
    // 24 MiB for the tenant, 32 MiB per instance: the pool is reached first.
    let pool = Arc::new(TenantMemory::new(24 << 20));
    let mut a = pooled(&pool);
    let baseline = pool.used();
    assert!(baseline > 0, "instantiation books the initial memory");
    let err = score(&mut a, &simple_batch(2)).unwrap_err();
    assert!(matches!(err, PluginError::TenantMemory { cap_bytes } if cap_bytes == 24 << 20), "{err}");
    // The failed store was dropped: what it grew is given back.
    // (The instance re-created in the background after the failure is dropped with it.)
    drop(a);
    let released = Instant::now() + Duration::from_secs(5);
    while pool.used() > 0 && Instant::now() < released {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.used(), 0, "a dropped instance releases its memory");
    // Another tenant's pool is its own: its instance hits only the per-instance cap.
    let other = Arc::new(TenantMemory::new(1 << 30));
    let mut b = pooled(&other);
    assert!(matches!(score(&mut b, &simple_batch(2)).unwrap_err(), PluginError::MemoryExhausted { .. }));
    assert_eq!(pool.used(), 0);
}

#[test]
fn malformed_results_are_rejected() {
    let engine = engine();
    let mut inst = instance(&engine, "test-wrong-len", json!(null));
    assert_eq!(score(&mut inst, &simple_batch(4)).unwrap_err(), PluginError::WrongLength { expected: 4, got: 3 });
    assert_eq!(score(&mut inst, &simple_batch(0)).unwrap_err(), PluginError::WrongLength { expected: 0, got: 1 });
    let mut inst = instance(&engine, "test-nan", json!(null));
    match score(&mut inst, &simple_batch(3)) {
        Err(PluginError::NonFinite { index: 2, value, .. }) => assert!(value.is_nan()),
        other => panic!("expected NonFinite at 2, got {other:?}"),
    }
}

#[test]
fn configure_errors_reject_the_instance() {
    let engine = engine();
    let compiled = compile(&engine, "test-bad-params");
    let err = engine.instantiate(compiled, "test-bad-params@0.1.0", &json!({"a": 1})).unwrap_err();
    match err {
        PluginError::Configure(msg) => assert!(msg.contains("rejects every params value"), "{msg}"),
        other => panic!("expected Configure, got {other:?}"),
    }
    let compiled = compile(&engine, "gravity");
    let err = engine.instantiate(compiled, "gravity@0.1.0", &json!({"gravty": 1})).unwrap_err();
    assert!(matches!(&err, PluginError::Configure(m) if m.contains("gravty")), "{err}");
}

#[test]
fn the_sandbox_denies_files_network_env_and_clocks() {
    let engine = engine();
    let mut inst = instance(&engine, "test-probe", json!(null));
    let got = score(&mut inst, &simple_batch(8)).unwrap();
    assert_eq!(got[0], 0.0, "read_dir(\"/\") must fail");
    assert_eq!(got[1], 0.0, "reading /etc/hostname must fail");
    assert_eq!(got[2], 0.0, "the wall clock is frozen at the epoch");
    assert_eq!(got[3], 0.0, "the monotonic clock does not advance");
    assert_eq!(got[4], 0.0, "no environment variables");
    assert_eq!(got[5], 0.0, "TCP connect must fail");
    assert_eq!(got[6], 0.0, "no arguments");
    // Randomness is seeded: a second instance hashes the same.
    let mut again = instance(&engine, "test-probe", json!(null));
    assert_eq!(score(&mut again, &simple_batch(8)).unwrap()[7], got[7]);

    let mut report = instance(&engine, "test-probe", json!({"report": true}));
    match score(&mut report, &simple_batch(1)) {
        Err(PluginError::Guest(msg)) => assert!(msg.contains("read_dir(\"/\") failed"), "{msg}"),
        other => panic!("expected the guest's read_dir error, got {other:?}"),
    }
}

#[test]
fn instances_do_not_share_state() {
    let engine = engine();
    // Two scenarios' instances of one compiled module: one trapping does not disturb the other.
    let mut a = instance(&engine, "test-trap", json!({"ok_calls": 1}));
    let mut b = instance(&engine, "test-trap", json!({"ok_calls": 2}));
    let batch = simple_batch(1);
    assert!(score(&mut a, &batch).is_ok());
    assert!(score(&mut a, &batch).is_err());
    assert!(score(&mut b, &batch).is_ok());
    assert!(score(&mut b, &batch).is_ok());
    assert_eq!(engine.cached(), 1);
}

/// The event path is a tokio task: a guest writing to stderr (every panic does) must not make
/// WASI block on the runtime from inside it.
#[tokio::test(flavor = "current_thread")]
async fn calls_from_inside_an_async_task_are_safe() {
    let engine = engine();
    let mut inst = instance(&engine, "test-trap", json!({"ok_calls": 0}));
    let err = score(&mut inst, &simple_batch(1)).unwrap_err();
    assert!(matches!(&err, PluginError::Trap(m) if m.contains("deliberate panic")), "{err}");
    let mut spin = instance(&engine, "test-spin", json!(null));
    assert!(matches!(score(&mut spin, &simple_batch(1)), Err(PluginError::BudgetExhausted { .. })));
}

/// `rtscore plugin test` reads the world from the bytes, without compiling: the same answer
/// as the compiled component's, and the same refusal of what is not a component.
#[test]
fn the_world_read_from_the_bytes_is_the_compiled_components() {
    use rtscore::plugin::PluginWorld;
    let engine = engine();
    for name in ["gravity", "completion-rate", "dwell-affinity"] {
        let bytes = rtscore_testkit::plugins::module(name);
        assert_eq!(PluginWorld::detect_bytes(&bytes).unwrap(), compile(&engine, name).world(), "{name}");
    }
    assert_eq!(PluginWorld::detect_bytes(&rtscore_testkit::plugins::v010_fixture("gravity")).unwrap(), PluginWorld::Scorer);
    let garbage = PluginWorld::detect_bytes(b"not a component").unwrap_err();
    assert_eq!(garbage.kind(), "compile", "{garbage}");
    // A core module (built for wasm32-unknown-unknown, say) is no component.
    let core = PluginWorld::detect_bytes(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(core.to_string().contains("not a component"), "{core}");
}

#[test]
fn a_metrics_component_is_detected_by_its_world_and_computes_checked_metrics() {
    use rtscore::plugin::{MetricsInput, PluginWorld};
    let engine = engine();
    assert_eq!(compile(&engine, "completion-rate").world(), PluginWorld::Metrics);
    assert_eq!(compile(&engine, "gravity").world(), PluginWorld::Scorer);
    let mut inst = instance(&engine, "completion-rate", json!({"start": "play", "complete": "complete"}));
    let input = MetricsInput {
        actions: vec!["complete".into(), "play".into()],
        counts: vec![3, 6],
        item_ids: vec!["a".into(), "b".into()],
        item_counts: vec![vec![3, 0], vec![4, 2]],
        item_watch_total_ms: vec![0.0, 0.0],
        ..MetricsInput::default()
    };
    let got = inst.compute_metrics(&input).unwrap();
    let values: Vec<(Option<&str>, f64)> = got.iter().map(|m| (m.item_id.as_deref(), m.value)).collect();
    assert_eq!(values, [(Some("a"), 0.75), (Some("b"), 0.0), (None, 0.5)]);
    // A metrics instance does not score, and the error names both sections.
    let err = score(&mut inst, &simple_batch(2)).unwrap_err();
    assert_eq!(err.kind(), "wrong_world");
    assert!(err.to_string().contains("hot_score.plugin") && err.to_string().contains("metrics.plugin"), "{err}");
    // Bad params are refused at configure, as for scorers.
    let compiled = compile(&engine, "completion-rate");
    let bad = engine.instantiate(compiled, "completion-rate@0.1.0", &json!({"start": "X"})).unwrap_err();
    assert_eq!(bad.kind(), "configure", "{bad}");
}

#[test]
fn a_profile_component_is_detected_by_its_world_and_its_interests_are_checked() {
    use rtscore::plugin::profile::InterestInput;
    use rtscore::plugin::{PluginWorld, ProfileEventInput, ProfileInput, UserInput};
    let engine = engine();
    assert_eq!(compile(&engine, "dwell-affinity").world(), PluginWorld::Profile);
    let mut inst = instance(&engine, "dwell-affinity", json!({"dwell_unit_ms": 10000}));
    let at = 1_767_225_600_000;
    let ev = |action: &str, category: Option<&str>, watch: Option<f64>| ProfileEventInput {
        item_id: "i".into(),
        action: action.into(),
        ts_ms: at,
        category: category.map(str::to_string),
        tags: vec!["red".into()],
        watch_time_ms: watch,
    };
    let user = |id: &str, events: Vec<ProfileEventInput>| UserInput {
        user_id: id.into(),
        interests: vec![InterestInput { name: "old".into(), score: 2.0 }],
        interests_as_of_ms: at - 86_400_000,
        update_ms: at,
        events,
    };
    let input = ProfileInput {
        tenant_id: "t".into(),
        scenario_id: "s".into(),
        actions: vec!["like".into(), "view".into()],
        weights: vec![3.0, 1.0],
        interest_decay_days: 1.0,
        users: vec![user("u1", vec![ev("view", Some("shoes"), Some(20_000.0)), ev("like", Some("bags"), None)]), user("u2", vec![])],
    };
    let got = inst.update_profiles(&input).unwrap();
    let close = |got: &[(String, f64)], want: &[(&str, f64)]| {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((n, s), (wn, ws)) in got.iter().zip(want) {
            assert!(n == wn && (s - ws).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    };
    close(&got[0], &[("shoes", 2.0), ("old", 1.0), ("bags", 0.75)]);
    close(&got[1], &[("old", 1.0)]);
    // A profile instance does not score, and a scorer is no profile plugin: both sections named.
    let err = score(&mut inst, &simple_batch(2)).unwrap_err();
    assert_eq!(err.kind(), "wrong_world");
    assert!(err.to_string().contains("hot_score.plugin") && err.to_string().contains("user_profile.plugin"), "{err}");
    let mut gravity = instance(&engine, "gravity", json!(null));
    let err = gravity.update_profiles(&input).unwrap_err();
    assert!(err.to_string().contains("implements world `scorer`, but user_profile.plugin needs world `profile`"), "{err}");
    let bad = engine.instantiate(compile(&engine, "dwell-affinity"), "dwell-affinity@0.1.0", &json!({"min_dwell": -1})).unwrap_err();
    assert_eq!(bad.kind(), "configure", "{bad}");
}
