#!/usr/bin/env bash
# The benchmark command of issue 7: every throughput, latency and memory row side by side in one
# run, printed as tables (docs/benchmarks.md quotes them). Builds the reference plugins, starts
# the local stack if needed, then runs, in release:
#   - the file pipeline (parse-only ceiling; built-in and decay-weighted plugin, medians of five
#     alternated runs; a shadow candidate; --job all; state bytes per (item, bucket) and per user;
#     peak RSS), `cargo bench --bench throughput`;
#   - end to end through Kafka and Redis, built-in and plugin (medians of five alternated
#     runs, against a parse-only ceiling on the same events), with the host's emission delay
#     p50/p99, `cargo bench --bench e2e_kafka`;
#   - the path users run against plain parsers (issue 21): parse-only rates of serde_json,
#     sonic-rs, simd-json and the host's parse_event beside `taskset -c 0 rtscore run` on the same
#     file, `cargo bench --bench parse_path`;
#   - the cost of a platform's own event shape (`--event-field`), scripts/bench-event-shapes.sh;
#   - one partition's snapshot (copy, encode, chunked store, load, import) at 1M and 10M
#     (item, minute) pairs, `cargo bench --bench checkpoint`;
#   - scaling (issue 20): 1, 2, 3 host processes of 1 and 2 pipelines (--threads), on a topic
#     keyed by scenario and (--repartition) on one keyed by user, `cargo bench --bench scale_out`
#     (RTSCORE_BENCH_ONLY=threads: the table without the kill-and-recover row).
# RTSCORE_BENCH_EVENTS sets the event count of each (default 2,000,000).
# About 8 minutes on the 2-core dev machine once built.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
prepare_build_env release
RTSCORE_LANG_PLUGINS=0 bash scripts/build-plugins.sh >/dev/null
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
cargo bench -p rtscore --bench throughput
cargo bench -p rtscore --bench e2e_kafka
cargo bench -p rtscore --bench parse_path
bash scripts/bench-event-shapes.sh
cargo bench -p rtscore --bench checkpoint
RTSCORE_BENCH_ONLY=threads RTSCORE_BENCH_EVENTS=4000000 cargo bench -p rtscore --bench scale_out
