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
log "the embedded demo without the service features (--no-default-features) builds and runs ..."
cargo build --quiet -p rtscore --no-default-features 2>&1 || status=$?
demo_out="$(mktemp)"
# The stack's URLs are exported above; the embedded default uses none of them.
if env -u KAFKA_SERVERS -u MONGODB_URL -u REDIS_URL "$CARGO_TARGET_DIR/debug/rtscore" run --generate-limit 30000 --generate-rate 200000 --view off \
    --plugins-dir "$RTSCORE_PLUGINS_OUT" --jsonl-out "$demo_out" && grep -q '"kind":"hot"' "$demo_out"; then
  log "  the demo emitted $(grep -c '"kind":"hot"' "$demo_out") hot lists"
else
  log "  the no-default-features demo did not emit hot lists"; status=1
fi
rm -f "$demo_out"
log "the Python and JavaScript guest SDKs and plugin ports, natively ..."
(cd guest-sdk-py && python3 -m unittest discover -s tests -t . -q 2>&1) || status=$?
for d in plugins/*/python; do (cd "$d" && PYTHONPATH="$ROOT/guest-sdk-py" python3 -m unittest -q 2>&1) || status=$?; done
node --test guest-sdk-js/test/ plugins/*/js/ 2>&1 | tail -n 8 || status=$?
log "running the test suite ..."
cargo test --workspace --no-fail-fast 2>&1 || status=$?
[ "${RTSCORE_STOP_STACK:-0}" = 1 ] && bash scripts/stack.sh stop
log "scripts/test.sh: exit $status after $((SECONDS - start))s"
exit $status
