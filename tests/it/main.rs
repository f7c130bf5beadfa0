//! The integration tests, one binary (it links the whole runtime once, not once a file): each
//! module is one suite on the real local stack (Kafka, FerretDB, Redis, wasmtime, the release
//! or debug `rtscore` binary). Run one suite with `cargo test -p rtscore --test it admin_api::`.
//! Suites run in parallel in this one process; the outage suites, which stop a service, take the
//! stack exclusively (`Stack::ensure_exclusive`). The shared harness (stack, hosts, sinks,
//! plugins, HTTP, browser) is the `rtscore-testkit` crate (`testkit/`).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_api;
mod admin_limits;
mod backtest;
mod config_layers;
mod console_browser;
mod docs_migration;
mod e2e_config_outage;
mod e2e_config_reload;
mod e2e_control_under_load;
mod e2e_dead_letter;
mod e2e_dedicated;
mod e2e_durable_profiles;
mod e2e_fleet_rollout;
mod e2e_job_plugin_rollout;
mod e2e_kafka_hot;
mod e2e_kafka_outage;
mod e2e_last_valid;
mod e2e_migration_knobs;
mod e2e_noisy_neighbour;
mod e2e_plugin_langs;
mod e2e_plugin_worlds;
mod e2e_profiles_metrics;
mod e2e_redis_outage;
mod e2e_repartition;
mod e2e_rollout;
mod e2e_scale_out;
mod e2e_verticals;
mod plugin_engine;
mod plugin_langs;
mod plugin_lifecycle;
mod plugin_mongo;
mod plugin_scaffold;
mod plugin_vectors;
mod plugin_wit_compat;
mod shared_vectors;
mod snapshot_chunks;

/// The harness starts the `rtscore` Cargo built with this test binary (testkit finds it at run
/// time), unless `RTSCORE_TEST_BIN` names another build.
#[test]
fn the_harness_runs_the_binary_cargo_built() {
    if let Some(other) = std::env::var_os("RTSCORE_TEST_BIN") {
        println!("skipped: RTSCORE_TEST_BIN={} runs another build", other.to_string_lossy());
        return;
    }
    assert_eq!(rtscore_testkit::host::rtscore_bin(), std::path::Path::new(env!("CARGO_BIN_EXE_rtscore")));
}
