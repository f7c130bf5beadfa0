//! WIT versions side by side: modules built against `rtscore:scoring@0.1.0` (the committed
//! fixtures in `tests/plugins/v0.1.0/`) load and score as before (as their rebuilds with the
//! current SDK, to 1e-12), modules built with the
//! current SDK target 0.2.0 and see the window context, and anything else is refused.

use std::sync::Arc;
use std::time::Duration;

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::config::{ScenarioKey, parse_scenario};
use rtscore::event::RecordBatch;
use rtscore::output::Output;
use rtscore::pipeline::{Pipeline, PipelineOptions};
use rtscore::plugin::{CompiledPlugin, PluginEngine, PluginError, PluginInstance, ScenarioScorer, ScorerUsed, WitVersion};
use rtscore::scoring::{FeatureColumn, FeatureValues, WindowBatch, builtin};
use rtscore_testkit::fixtures::event_line;
use rtscore_testkit::plugins::{V010_FIXTURES, module, random_batch, rel_diff, simple_batch, v010_fixture, with_context};
use serde_json::json;

fn engine() -> PluginEngine {
    let limits = SandboxLimits { call_budget: Duration::from_millis(200), memory_bytes: 32 << 20, ..SandboxLimits::default() };
    PluginEngine::new(limits, Default::default()).expect("engine")
}

fn compile(engine: &PluginEngine, bytes: &[u8], what: &str) -> Arc<CompiledPlugin> {
    engine.compile(bytes).unwrap_or_else(|e| panic!("compile {what}: {e}"))
}

fn instance(engine: &PluginEngine, bytes: &[u8], label: &str, params: serde_json::Value) -> PluginInstance {
    let compiled = compile(engine, bytes, label);
    engine.instantiate(compiled, label, &params).unwrap_or_else(|e| panic!("instantiate {label}: {e}"))
}

fn score(inst: &mut PluginInstance, batch: &WindowBatch) -> Result<Vec<f64>, PluginError> {
    let mut out = Vec::new();
    inst.score(batch, &mut out).map(|()| out)
}

#[test]
fn fixtures_are_detected_as_0_1_0_and_current_builds_as_0_2_0() {
    let engine = engine();
    for name in V010_FIXTURES {
        assert_eq!(compile(&engine, &v010_fixture(name), name).wit_version(), WitVersion::V0_1, "{name} fixture");
        assert_eq!(compile(&engine, &module(name), name).wit_version(), WitVersion::V0_2, "{name} rebuild");
    }
    assert_eq!(compile(&engine, &module("test-context"), "test-context").wit_version(), WitVersion::V0_2);
}

#[test]
fn the_0_1_0_decay_weighted_fixture_equals_the_builtin_formula() {
    let engine = engine();
    let mut inst = instance(&engine, &v010_fixture("decay-weighted"), "decay-weighted@0.1.0", json!(null));
    let mut expected = Vec::new();
    for seed in 0..40u64 {
        let batch = random_batch(seed, [0, 1, 7, 100, 1000][seed as usize % 5], 6);
        builtin::score_batch(&batch, &mut expected);
        let got = score(&mut inst, &batch).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(got.len(), expected.len(), "seed {seed}");
        for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
            // The same bound as the 0.2.0 build's test (plugin_engine.rs), well inside DESIGN's 1e-3.
            assert!(rel_diff(*g, *e) <= 1e-9, "seed {seed} item {k}: plugin {g} vs builtin {e}");
        }
    }
}

#[test]
fn every_0_1_0_fixture_scores_as_its_0_2_0_rebuild() {
    let engine = engine();
    let params = |name: &str| match name {
        "gravity" => vec![json!(null), json!({"gravity": 1.2})],
        "wilson-ctr" => vec![json!(null), json!({"min_impressions": 5, "click_action": "click", "impression_action": "view"})],
        _ => vec![json!(null)],
    };
    for name in V010_FIXTURES {
        for p in params(name) {
            let mut old = instance(&engine, &v010_fixture(name), &format!("{name}@0.1.0"), p.clone());
            let mut new = instance(&engine, &module(name), &format!("{name}@0.2.0"), p.clone());
            for seed in 0..25u64 {
                let batch = with_context(random_batch(1000 + seed, [0, 1, 9, 200, 1500][seed as usize % 5], 8));
                let (a, b) = (score(&mut old, &batch), score(&mut new, &batch));
                let (a, b) = (
                    a.unwrap_or_else(|e| panic!("{name} 0.1.0 seed {seed}: {e}")),
                    b.unwrap_or_else(|e| panic!("{name} seed {seed}: {e}")),
                );
                // The contract is that a 0.1.0 binary scores as it always did, and it does: it runs
                // unchanged. Its rebuild uses the current SDK, whose `exp` (guest-sdk/src/math.rs,
                // within 1 ulp; was the C library's) can differ in the last bit per term: so the
                // two agree to 1e-12 relative, not bit for bit (docs/benchmarks.md, "Plugin vs
                // native").
                assert_eq!(a.len(), b.len(), "{name} {p} seed {seed}");
                for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        x.to_bits() == y.to_bits() || rel_diff(*x, *y) <= 1e-12,
                        "{name} {p} seed {seed} item {k}: 0.1.0 {x} vs rebuild {y}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_component_of_another_version_is_refused_naming_the_supported_ones() {
    let engine = engine();
    // The fixture with its `rtscore:scoring/types@0.1.0` import renamed to 0.9.0 (same length,
    // so the binary stays well formed).
    let mut bytes = v010_fixture("gravity");
    let (from, to) = (b"rtscore:scoring/types@0.1.0", b"rtscore:scoring/types@0.9.0");
    let mut renamed = 0;
    for i in 0..=bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            renamed += 1;
        }
    }
    assert!(renamed > 0);
    let err = engine.compile(&bytes).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PluginError::Compile(_)), "{err:?}");
    assert!(msg.contains("rtscore:scoring@0.9.0"), "{msg}");
    assert!(msg.contains("rtscore:scoring@0.1.0 and rtscore:scoring@0.2.0"), "{msg}");
    // An empty component imports no scoring interface at all.
    let empty = b"\0asm\x0d\0\x01\0";
    let msg = engine.compile(empty).unwrap_err().to_string();
    assert!(msg.contains("imports no rtscore:scoring/types") && msg.contains("rtscore:scoring@0.2.0"), "{msg}");
}

/// A batch with item ids, context and one numeric and one text feature column.
fn context_batch() -> WindowBatch {
    let mut b = with_context(simple_batch(3));
    b.features = vec![
        FeatureColumn { name: "boost".into(), values: FeatureValues::Number(vec![0.5, 0.0, 7.0]) },
        FeatureColumn { name: "tag".into(), values: FeatureValues::Text(vec!["".into(), "hot".into(), "cold".into()]) },
    ];
    b
}

#[test]
fn a_0_2_0_plugin_sees_item_ids_context_and_features() {
    let engine = engine();
    let bytes = module("test-context");
    let mut inst = instance(&engine, &bytes, "test-context@0.1.0", json!(null));
    let got = score(&mut inst, &context_batch()).unwrap();
    // 1000 · top_n + slide in s + boost + 100 if tagged hot + len(id) / 100; ids are `item-<k>`.
    let base = 50_000.0 + 60.0 + 0.06;
    assert_eq!(got, vec![base + 0.5, base + 100.0, base + 7.0]);
    let mut report = instance(&engine, &bytes, "test-context@0.1.0", json!({"report": true}));
    let err = score(&mut report, &context_batch()).unwrap_err();
    assert_eq!(err, PluginError::Guest("tenant=t scenario=s slide=60000 top_n=50 ids=item-0,item-1,item-2 features=boost,tag".into()));
}

#[test]
fn fallback_crosses_versions_and_a_bad_score_names_the_item() {
    let engine = engine();
    let mut scorer = ScenarioScorer::new(ScenarioKey::new("t", "s"));
    scorer.install(instance(&engine, &v010_fixture("decay-weighted"), "decay-weighted@0.1.0", json!(null)));
    assert!(!scorer.reads_context(), "a 0.1.0 module needs no context");
    let batch = with_context(random_batch(5, 20, 4));
    let (mut out, mut expected) = (Vec::new(), Vec::new());
    assert_eq!(scorer.score(&batch, &mut out).used, ScorerUsed::Plugin("decay-weighted@0.1.0".into()));
    // A 0.2.0 module replacing it fails: the proven 0.1.0 one scores instead.
    scorer.install(instance(&engine, &module("test-nan"), "test-nan@0.1.0", json!(null)));
    assert!(scorer.reads_context());
    let outcome = scorer.score(&batch, &mut out);
    assert_eq!(outcome.used, ScorerUsed::Plugin("decay-weighted@0.1.0".into()));
    match outcome.error {
        Some(PluginError::NonFinite { index: 19, item: Some(id), .. }) => assert_eq!(id, "item-19"),
        other => panic!("expected a NaN of item-19, got {other:?}"),
    }
    builtin::score_batch(&batch, &mut expected);
    assert!(out.iter().zip(&expected).all(|(a, b)| rel_diff(*a, *b) <= 1e-9));
}

const T0: i64 = 1_767_225_600_000;

fn pipeline_with(scorer_bytes: Option<(&[u8], serde_json::Value)>) -> (Pipeline, Vec<Output>) {
    let doc = json!({"tenant_id": "t1", "scenario_id": "s1", "revision": 1, "config": {"realtime_compute": {"hot_score": {
        "action_weights": {"view": 1.0, "click": 2.0}, "decay_lambda": 0.1, "window_size_minutes": 5,
        "window_slide_minutes": 1, "top_n": 3}}}});
    let cfg = Arc::new(parse_scenario(&doc).expect("scenario"));
    let mut p = Pipeline::new(PipelineOptions::default());
    p.apply_config(&cfg.key, Some(cfg.clone()));
    if let Some((bytes, params)) = scorer_bytes {
        let inst = instance(&engine(), bytes, "test-context@0.1.0", params);
        p.hot_job_mut().scenario_mut(&cfg.key).expect("scenario runs").scorer.install(inst);
    }
    let mut batch = RecordBatch::default();
    for (k, item) in ["a", "bb", "ccc", "dddd"].iter().enumerate() {
        batch.push(&event_line("t1", "s1", item, "view", T0 + 1_000 * k as i64));
    }
    let (mut out, mut rejects) = (Vec::new(), Vec::new());
    p.process(&batch, &mut out, &mut rejects);
    p.finish(&mut out);
    assert!(rejects.is_empty());
    (p, out)
}

#[test]
fn the_pipeline_fills_the_context_for_a_0_2_0_plugin() {
    let bytes = module("test-context");
    let (_, out) = pipeline_with(Some((&bytes, json!(null))));
    let hot: Vec<_> = out.iter().filter_map(|o| if let Output::Hot(h) = o { Some(h) } else { None }).collect();
    assert!(!hot.is_empty());
    for h in hot.iter().filter(|h| !h.items.is_empty()) {
        assert_eq!(h.plugin.as_deref(), Some("test-context@0.1.0"));
        assert_eq!(h.items.len(), 3, "top_n");
        for i in &h.items {
            // 1000 · top_n + slide (60 s) + len(id) / 100: the pipeline passed ids, slide, top_n.
            let want = 3_060.0 + i.item_id.len() as f64 / 100.0;
            assert!((i.score - want).abs() < 1e-9, "{}: {} vs {want}", i.item_id, i.score);
        }
    }
    let (p, _) = pipeline_with(Some((&bytes, json!({"report": true}))));
    let s = p.hot_job().scenario(&ScenarioKey::new("t1", "s1")).expect("scenario");
    let err = s.last_plugin_error.as_deref().unwrap_or_default();
    assert!(err.contains("tenant=t1 scenario=s1 slide=60000 top_n=3 ids="), "{err}");
}
