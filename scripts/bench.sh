#!/usr/bin/env bash
# The benchmark command of issue 7: every throughput, latency and memory row side by side in one
# run, printed as tables (docs/benchmarks.md quotes them). Builds the reference plugins, starts
# the local stack if needed, then runs, in release:
#   - the file pipeline (parse-only ceiling; built-in and decay-weighted plugin, medians of five
#     alternated runs; a shadow candidate; --job all; state bytes per (item, bucket) and per user;
#     peak RSS), `cargo bench --bench throughput`;
#   - end to end through Kafka and Redis, built-in and plugin (medians of three alternated
#     runs, against a parse-only ceiling on the same events), with the host's emission delay
#     p50/p99, `cargo bench --bench e2e_kafka`.
# RTSCORE_BENCH_EVENTS sets the event count of each (default 2,000,000).
# About 7 minutes on the 2-core dev machine once built.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/stack.sh start
eval "$(bash scripts/stack.sh env)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RTSCORE_CACHE/target}"
prune_target_cache "$CARGO_TARGET_DIR" release
export RTSCORE_PLUGINS_OUT="${RTSCORE_PLUGINS_OUT:-$CARGO_TARGET_DIR/plugins}"
export RTSCORE_TEST_PLUGINS_OUT="${RTSCORE_TEST_PLUGINS_OUT:-$CARGO_TARGET_DIR/test-plugins}"
export RTSCORE_TEST_WASM_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release"
bash scripts/build-plugins.sh >/dev/null
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
cargo bench -p rtscore --bench throughput
cargo bench -p rtscore --bench e2e_kafka
