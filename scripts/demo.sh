#!/usr/bin/env bash
# The README's first command: the embedded default with no external services. Makes sure the
# pinned toolchain and wasm target are there, builds the reference plugins into target/plugins,
# then runs the host on generated events with a live view. Extra arguments go to `rtscore run`.
#
# The first run on a fresh machine waits for the build, so by default it builds the light
# variant: the `demo` profile without the service features (Kafka, MongoDB, Redis, HTTP): from a
# fresh clone on 2 cores, 13.5 minutes to the first events instead of ~18 (README, "Two
# commands"). RTSCORE_DEMO_FULL=1 builds the full release binary instead, for flags such as
# --http-addr (the operator console) or --redis-url.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
channel="$(toolchain_channel)"
if ! rustup target list --toolchain "$channel" --installed 2>/dev/null | grep -q wasm32-wasip2; then
  log "installing Rust $channel with wasm32-wasip2 ..."
  rustup toolchain install "$channel" --profile minimal -c rustfmt -c clippy -t wasm32-wasip2
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
log "building the reference plugins ..."
RTSCORE_LANG_PLUGINS=0 RTSCORE_PLUGINS_OUT="$ROOT/target/plugins" bash scripts/build-plugins.sh >/dev/null
if [ "${RTSCORE_DEMO_FULL:-0}" = 1 ]; then
  build=(--release)
else
  build=(--profile demo --no-default-features)
  # The embedded default talks to no service, whatever the shell exports.
  unset KAFKA_SERVERS MONGODB_URL REDIS_URL RTSCORE_HTTP_ADDR
  log "building rtscore (demo profile, no service features; RTSCORE_DEMO_FULL=1 for the full build) ..."
fi
exec cargo run --quiet "${build[@]}" -p rtscore -- run --plugins-dir "$ROOT/target/plugins" "$@"
