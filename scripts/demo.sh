#!/usr/bin/env bash
# The README's first command: the embedded default with no external services. Makes sure the
# pinned toolchain and wasm target are there, builds the reference plugins into target/plugins,
# then runs the host on generated events with a live view. Extra arguments go to `rtscore run`.
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
RTSCORE_PLUGINS_OUT="$ROOT/target/plugins" bash scripts/build-plugins.sh >/dev/null
exec cargo run --quiet --release -p rtscore -- run --plugins-dir "$ROOT/target/plugins" "$@"
