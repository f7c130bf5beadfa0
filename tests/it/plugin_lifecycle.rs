//! The plugin lifecycle around the engine: the registry (watched directory, hashes), the
//! manager preparing instances, and the per-scenario scorer's fallback and quarantine.

use std::time::{Duration, Instant};

use rtscore::config::plugin_limits::SandboxLimits;
use rtscore::config::{PluginRef, ScenarioKey};
use rtscore::plugin::{
    ModuleId, PluginEngine, PluginError, PluginInstance, PluginLoader, PluginRegistry, PluginState, ScenarioScorer, ScorerUsed,
    publish_to_dir, sha256_hex,
};
use rtscore::scoring::{WindowBatch, builtin};
use rtscore_testkit::plugins::{module, random_batch, rel_diff};
use serde_json::json;

fn engine() -> PluginEngine {
    engine_with_budget(Duration::from_millis(100))
}

fn engine_with_budget(call_budget: Duration) -> PluginEngine {
    let limits = SandboxLimits { call_budget, memory_bytes: 32 << 20, ..SandboxLimits::default() };
    PluginEngine::new(limits, Default::default()).expect("engine")
}

fn instance(engine: &PluginEngine, crate_name: &str, params: serde_json::Value) -> PluginInstance {
    let compiled = engine.compile(&module(crate_name)).unwrap_or_else(|e| panic!("compile {crate_name}: {e}"));
    engine.instantiate(compiled, format!("{crate_name}@0.1.0"), &params).unwrap_or_else(|e| panic!("instantiate {crate_name}: {e}"))
}

fn reference(name: &str, sha256: Option<String>, params: serde_json::Value) -> PluginRef {
    PluginRef { name: name.into(), version: "0.1.0".into(), sha256, params }
}

fn builtin_scores(batch: &WindowBatch) -> Vec<f64> {
    let mut out = Vec::new();
    builtin::score_batch(batch, &mut out);
    out
}

fn key() -> ScenarioKey {
    ScenarioKey::new("tenant", "scenario")
}

#[test]
fn each_broken_plugin_falls_back_to_builtin_then_is_quarantined() {
    // The budget is wall time: on a loaded machine, growing memory to the cap can outlast a
    // short one, so only the spinning plugin meets the short budget.
    let (short, long) = (engine(), engine_with_budget(Duration::from_secs(5)));
    let batch = random_batch(3, 20, 4);
    let expected = builtin_scores(&batch);
    for (crate_name, params, kind) in [
        ("test-trap", json!(null), "trap"),
        ("test-spin", json!(null), "budget_exhausted"),
        ("test-oom", json!(null), "memory_exhausted"),
        ("test-wrong-len", json!(null), "wrong_length"),
        ("test-nan", json!(null), "non_finite"),
    ] {
        let mut scorer = ScenarioScorer::new(key());
        let engine = if kind == "budget_exhausted" { &short } else { &long };
        scorer.install(instance(engine, crate_name, params));
        let label = format!("{crate_name}@0.1.0");
        for call in 1..=3 {
            let mut out = Vec::new();
            let outcome = scorer.score(&batch, &mut out);
            assert_eq!(outcome.used, ScorerUsed::Builtin, "{crate_name} call {call}");
            let err = outcome.error.unwrap_or_else(|| panic!("{crate_name} call {call}: no error reported"));
            assert_eq!(err.kind(), kind, "{crate_name} call {call}: {err}");
            assert_eq!(out, expected, "{crate_name} call {call}: fallback scores");
            let state = scorer.state();
            if call < 3 {
                assert!(matches!(state, PluginState::Fallback { label: l, .. } if *l == label), "{crate_name} call {call}: {state}");
            } else {
                assert!(matches!(state, PluginState::Quarantined { label: l, .. } if *l == label), "{crate_name}: {state}");
            }
        }
        // Quarantined: the plugin is not called again; nothing more to report.
        let mut out = Vec::new();
        let outcome = scorer.score(&batch, &mut out);
        assert_eq!((outcome.used, outcome.error), (ScorerUsed::Builtin, None), "{crate_name} after quarantine");
        assert_eq!(out, expected);
    }
}

#[test]
fn a_failing_new_plugin_falls_back_to_the_last_good_one() {
    let engine = engine();
    let batch = random_batch(5, 50, 4);
    let mut scorer = ScenarioScorer::new(key());
    scorer.install(instance(&engine, "decay-weighted", json!(null)));
    let mut out = Vec::new();
    assert_eq!(scorer.score(&batch, &mut out).used, ScorerUsed::Plugin("decay-weighted@0.1.0".into()));
    let good = out.clone();

    scorer.install(instance(&engine, "test-nan", json!(null)));
    for _ in 0..4 {
        let outcome = scorer.score(&batch, &mut out);
        assert_eq!(outcome.used, ScorerUsed::Plugin("decay-weighted@0.1.0".into()));
        assert_eq!(out, good);
    }
    assert_eq!(scorer.state().name(), "quarantined");

    // A new reference lifts the quarantine.
    scorer.install(instance(&engine, "gravity", json!(null)));
    assert_eq!(
        scorer.score(&batch, &mut out),
        rtscore::plugin::ScoreOutcome { used: ScorerUsed::Plugin("gravity@0.1.0".into()), error: None }
    );
    assert_eq!(scorer.state(), &PluginState::Active { label: "gravity@0.1.0".into() });
}

#[test]
fn a_transient_failure_recovers_without_quarantine() {
    let engine = engine();
    let batch = random_batch(9, 5, 2);
    let mut scorer = ScenarioScorer::new(key());
    // Succeeds once per fresh instance: trap, re-instantiate, succeed, trap, ...
    scorer.install(instance(&engine, "test-trap", json!({"ok_calls": 1})));
    let mut out = Vec::new();
    for call in 0..6 {
        let outcome = scorer.score(&batch, &mut out);
        if call % 2 == 0 {
            assert_eq!(outcome.used, ScorerUsed::Plugin("test-trap@0.1.0".into()), "call {call}");
        } else {
            assert!(matches!(outcome.error, Some(PluginError::Trap(_))), "call {call}: {:?}", outcome.error);
        }
    }
    assert_eq!(scorer.state().name(), "fallback", "alternating failures never reach 3 in a row");
}

async fn wait_for_change(
    rx: &mut tokio::sync::broadcast::Receiver<rtscore::plugin::RegistryChange>,
    id: &ModuleId,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(change)) if change.changed.contains(id) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("change channel: {e}"),
            Err(_) => panic!("no change announced for {id} within {within:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_notices_new_and_replaced_modules_in_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // The directory does not exist yet: watching creates it.
    let dir = tmp.path().join("plugins");
    let registry = PluginRegistry::new();
    registry.watch_dir(&dir).await.unwrap();
    assert!(registry.modules().is_empty());
    let mut rx = registry.subscribe();
    let id = ModuleId::new("gravity", "0.1.0").unwrap();

    let bytes = module("gravity");
    std::fs::write(dir.as_path().join("gravity@0.1.0.wasm"), &bytes).unwrap();
    let took = wait_for_change(&mut rx, &id, Duration::from_millis(1500)).await;
    eprintln!("new module noticed after {took:?}");
    let found = registry.modules();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].sha256, sha256_hex(&bytes));

    // Replacing it announces it again, with the new hash.
    let other = module("trend");
    publish_to_dir(dir.as_path(), "gravity", "0.1.0", &other).await.unwrap();
    wait_for_change(&mut rx, &id, Duration::from_millis(1500)).await;
    assert_eq!(registry.modules()[0].sha256, sha256_hex(&other));

    std::fs::remove_file(dir.as_path().join("gravity@0.1.0.wasm")).unwrap();
    wait_for_change(&mut rx, &id, Duration::from_millis(1500)).await;
    assert!(registry.modules().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_verifies_the_pinned_hash() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = module("decay-weighted");
    let sha = sha256_hex(&bytes);
    publish_to_dir(dir.path(), "decay-weighted", "0.1.0", &bytes).await.unwrap();
    let registry = PluginRegistry::new();
    registry.watch_dir(dir.path()).await.unwrap();
    let manager = PluginLoader::new(engine(), registry);
    let k = key();

    let inst = manager.prepare(&k, &reference("decay-weighted", Some(sha.clone()), json!(null))).await.unwrap();
    assert_eq!((inst.label(), inst.sha256()), ("decay-weighted@0.1.0", sha.as_str()));
    // Upper-case pins are the same hash.
    manager.prepare(&k, &reference("decay-weighted", Some(sha.to_uppercase()), json!(null))).await.unwrap();
    // Unpinned: the module found is used.
    manager.prepare(&k, &reference("decay-weighted", None, json!(null))).await.unwrap();

    let wrong = "0".repeat(64);
    let err = manager.prepare(&k, &reference("decay-weighted", Some(wrong.clone()), json!(null))).await.unwrap_err();
    assert_eq!(err, PluginError::HashMismatch { reference: "decay-weighted@0.1.0".into(), expected: wrong, actual: sha.clone() });

    // The manager resolves in the scenario tenant's namespace: a missing module is not in it.
    let err = manager.prepare(&k, &reference("nope", None, json!(null))).await.unwrap_err();
    assert_eq!(err, PluginError::NotVisible { reference: "nope@0.1.0".into(), tenant: "tenant".into() });

    // Params errors surface at prepare time, before the scenario's scorer sees the instance.
    let err = manager.prepare(&k, &reference("decay-weighted", Some(sha), json!({"lambda": 1}))).await.unwrap_err();
    assert!(matches!(&err, PluginError::Configure(m) if m.contains("lambda")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_tampered_with_after_indexing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = module("gravity");
    let sha = sha256_hex(&bytes);
    publish_to_dir(dir.path(), "gravity", "0.1.0", &bytes).await.unwrap();
    let registry = PluginRegistry::new();
    registry.watch_dir(dir.path()).await.unwrap();
    // Overwrite the file behind the index's back (same length, different content) and read it
    // before any rescan: the bytes read are hashed again and refused.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(dir.path().join("gravity@0.1.0.wasm"), &tampered).unwrap();
    let err = registry.resolve(&reference("gravity", Some(sha.clone()), json!(null))).await.unwrap_err();
    assert!(matches!(&err, PluginError::HashMismatch { expected, .. } if *expected == sha), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_flow() {
    let dir = tempfile::tempdir().unwrap();
    let registry = PluginRegistry::new();
    registry.watch_dir(dir.path()).await.unwrap();
    let manager = PluginLoader::new(engine(), registry.clone());
    let mut changes = manager.subscribe();
    let k = key();
    let batch = random_batch(21, 30, 3);
    let mut scorer = ScenarioScorer::new(k.clone());
    let r = reference("swap", None, json!(null));

    // Not published yet: load fails, builtin scores.
    let err = manager.prepare(&k, &r).await.unwrap_err();
    scorer.load_failed(r.label(), &err);
    let mut out = Vec::new();
    assert_eq!(scorer.score(&batch, &mut out).used, ScorerUsed::Builtin);

    // Published: the change names the reference; prepare and install.
    publish_to_dir(dir.path(), "swap", "0.1.0", &module("decay-weighted")).await.unwrap();
    let id = ModuleId::new("swap", "0.1.0").unwrap();
    wait_for_change(&mut changes, &id, Duration::from_millis(1500)).await;
    scorer.set_loading(r.label());
    scorer.install(manager.prepare(&k, &r).await.unwrap());
    assert_eq!(scorer.score(&batch, &mut out).used, ScorerUsed::Plugin("swap@0.1.0".into()));
    let expected = builtin_scores(&batch);
    assert!(out.iter().zip(&expected).all(|(a, b)| rel_diff(*a, *b) <= 1e-9), "{out:?} vs {expected:?}");
    let decay_scores = out.clone();

    // Replaced by another formula under the same name: swap again without restarting.
    publish_to_dir(dir.path(), "swap", "0.1.0", &module("gravity")).await.unwrap();
    wait_for_change(&mut changes, &id, Duration::from_millis(1500)).await;
    scorer.install(manager.prepare(&k, &r).await.unwrap());
    assert_eq!(scorer.score(&batch, &mut out).used, ScorerUsed::Plugin("swap@0.1.0".into()));
    assert_ne!(out, decay_scores, "the new module's formula is in force");
    assert_eq!(manager.engine().purge_unused(), 1, "the replaced module's code is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_runs_only_its_tenants_modules_and_shared_ones() {
    use rtscore::admin::plugins::PluginTarget;
    use rtscore::admin::{PluginQuota, PluginService, ScenarioService};
    let tmp = tempfile::tempdir().unwrap();
    let (plugins, scenarios) = (tmp.path().join("plugins"), tmp.path().join("scenarios"));
    std::fs::create_dir_all(&scenarios).unwrap();
    // acme uploads a module (as the admin API does); an operator drops one in by hand.
    let service = PluginService::new(PluginTarget::Dir(plugins.clone()));
    let bytes = module("gravity");
    service.publish(Some("acme"), "acme-gravity", "0.1.0", bytes.clone(), PluginQuota::TENANT).await.unwrap();
    std::fs::write(plugins.join("decay-weighted@0.1.0.wasm"), module("decay-weighted")).unwrap();
    let registry = PluginRegistry::new();
    registry.watch_dir(&plugins).await.unwrap();
    let mut changes = registry.subscribe();
    let manager = PluginLoader::new(engine(), registry);
    let (acme, rival) = (ScenarioKey::new("acme", "s"), ScenarioKey::new("rival", "s"));
    let owned = reference("acme-gravity", Some(sha256_hex(&bytes)), json!(null));
    let operators = reference("decay-weighted", None, json!(null));

    manager.prepare(&acme, &owned).await.expect("the owner runs its module");
    let refused = manager.prepare(&rival, &owned).await.unwrap_err();
    assert_eq!(refused, PluginError::NotVisible { reference: "acme-gravity@0.1.0".into(), tenant: "rival".into() });
    let missing = manager.prepare(&rival, &reference("ghost", None, json!(null))).await.unwrap_err();
    assert_eq!(missing.to_string().replace("ghost", "acme-gravity"), refused.to_string(), "a foreign module looks missing");
    for k in [&acme, &rival] {
        manager.prepare(k, &operators).await.expect("an operator's module is shared");
    }

    // An admin shares it: the change is announced (hosts re-resolve) and the rival may run it.
    let id = ModuleId::new("acme-gravity", "0.1.0").unwrap();
    let store = ScenarioService::new(rtscore::config::store::ScenarioStore::Dir(scenarios));
    assert!(service.set_shared(&store, "acme-gravity", "0.1.0", true).await.unwrap().shared);
    wait_for_change(&mut changes, &id, Duration::from_millis(1500)).await;
    manager.prepare(&rival, &owned).await.expect("shared: the rival runs it");
    // Unshared (no other tenant's scenario references it): refused for the rival again.
    assert!(!service.set_shared(&store, "acme-gravity", "0.1.0", false).await.unwrap().shared);
    wait_for_change(&mut changes, &id, Duration::from_millis(1500)).await;
    assert!(matches!(manager.prepare(&rival, &owned).await, Err(PluginError::NotVisible { .. })));
    manager.prepare(&acme, &owned).await.expect("the owner still runs it");
}
