#!/usr/bin/env bash
# The one command that installs what the project needs, starts the local stack and runs every
# test. CI runs exactly this (.ci/run). Services are left running for the next run unless
# RTSCORE_STOP_STACK=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
start=$SECONDS
prepare_build_env debug
log "building plugins (wasm32-wasip2) ..."
bash scripts/build-plugins.sh
log "clippy (warnings are errors; the workspace lints deny unwrap/expect outside tests) ..."
status=0
cargo clippy --workspace --all-targets --quiet -- -D warnings 2>&1 || status=$?
log "module dependencies (no cycle among the host's modules) ..."
python3 scripts/check-module-deps.py || status=$?
log "running the test suite ..."
cargo test --workspace --no-fail-fast 2>&1 || status=$?
[ "${RTSCORE_STOP_STACK:-0}" = 1 ] && bash scripts/stack.sh stop
log "scripts/test.sh: exit $status after $((SECONDS - start))s"
exit $status
