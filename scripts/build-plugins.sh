#!/usr/bin/env bash
# Builds every plugin crate (plugins/*/, tests/plugins/*/) as a wasm32-wasip2 component and
# places each as <name>@<version>.wasm, printing its sha256 for scenario references: reference
# plugins in $RTSCORE_PLUGINS_OUT (default <repo>/target/plugins, the runtime's default
# --plugins-dir), the deliberately broken test plugins in $RTSCORE_TEST_PLUGINS_OUT (default
# <repo>/target/test-plugins), so they never sit in a real plugins directory. Then the Python
# and JavaScript ports (scripts/build-lang-plugins.sh) as <name>-py@<version>.wasm and
# <name>-js@<version>.wasm beside the reference plugins.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
out="${RTSCORE_PLUGINS_OUT:-$ROOT/target/plugins}"
test_out="${RTSCORE_TEST_PLUGINS_OUT:-$ROOT/target/test-plugins}"
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$out" "$test_out"
crates=()
for manifest in plugins/*/Cargo.toml tests/plugins/*/Cargo.toml; do
  [ -f "$manifest" ] || continue
  crates+=("$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)")
done
[ ${#crates[@]} -gt 0 ] || { log "no plugin crates found"; exit 0; }
args=(); for c in "${crates[@]}"; do args+=(-p "$c"); done
# The workspace release profile keeps line tables for the host's backtraces; a plugin module
# needs neither those nor symbols (~3.3 MB with them, ~0.2 MB without). The wasm32 artifacts
# are only built here, so this changes nothing for the host's own builds.
# WebAssembly SIMD comes from .cargo/config.toml (`-C target-feature=+simd128` for the wasm
# target only): the guest SDK's decay then runs two rows at a time.
CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
  cargo build --quiet --release --target wasm32-wasip2 "${args[@]}"
for manifest in plugins/*/Cargo.toml tests/plugins/*/Cargo.toml; do
  [ -f "$manifest" ] || continue
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)"
  version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)"
  [ -n "$version" ] || version="0.1.0"
  wasm="$target_dir/wasm32-wasip2/release/${name//-/_}.wasm"
  [ -f "$wasm" ] || die "expected $wasm after the build"
  case "$manifest" in tests/*) dest="$test_out/$name@$version.wasm" ;; *) dest="$out/$name@$version.wasm" ;; esac
  # Copy through a temp file and rename, so a watching host never reads half a module.
  cp "$wasm" "$dest.tmp" && mv "$dest.tmp" "$dest"
  printf '%-28s %8s bytes  %s\n' "$name@$version" "$(stat -c %s "$dest")" "$(sha256sum "$dest" | cut -d' ' -f1)"
done
# The Python and JavaScript ports of the reference plugins (skipped when unchanged, or with
# RTSCORE_LANG_PLUGINS=0: the demo and the throughput benches do not use them).
if [ "${RTSCORE_LANG_PLUGINS:-1}" != 0 ]; then
  bash "$ROOT/scripts/build-lang-plugins.sh"
fi
