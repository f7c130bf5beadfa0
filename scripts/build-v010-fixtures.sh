#!/usr/bin/env bash
# Rebuilds the WIT 0.1.0 plugin fixtures in tests/plugins/v0.1.0/ from the last commit whose
# guest SDK targeted rtscore:scoring@0.1.0. The host must keep loading such modules unchanged
# (docs/plugins.md#compatibility); the fixtures are committed so that stays tested after the
# SDK moved on. Usage: scripts/build-v010-fixtures.sh [commit]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
commit="${1:-01a17ce4d74718aed1717ee6cf2d9bae9c95a77d}"
plugins=(decay-weighted gravity trend wilson-ctr)
dest="$ROOT/tests/plugins/v0.1.0"
src="$(mktemp -d "${TMPDIR:-/tmp}/rtscore-v010.XXXXXX")"
target="${CARGO_TARGET_DIR:-$ROOT/target}/v010-fixtures"
cleanup() { git -C "$ROOT" worktree remove --force "$src" 2>/dev/null || rm -rf "$src"; }
trap cleanup EXIT
git -C "$ROOT" worktree add --quiet --detach "$src" "$commit"
grep -q 'rtscore:scoring@0.1.0' "$src/wit/scoring.wit" || die "commit $commit does not define rtscore:scoring@0.1.0"
args=(); for p in "${plugins[@]}"; do args+=(-p "$p"); done
# No debug info and no symbols: ~180 KB per module instead of ~3 MB. Paths are remapped so the
# bytes do not depend on where the checkout and the Cargo home are.
(cd "$src" && CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
  RUSTFLAGS="--remap-path-prefix=$src=/rtscore --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  cargo build --quiet --release --locked --target wasm32-wasip2 --target-dir "$target" "${args[@]}")
mkdir -p "$dest"
for p in "${plugins[@]}"; do
  cp "$target/wasm32-wasip2/release/${p//-/_}.wasm" "$dest/$p@0.1.0.wasm"
  printf '%-24s %8s bytes  %s\n' "$p@0.1.0" "$(stat -c %s "$dest/$p@0.1.0.wasm")" "$(sha256sum "$dest/$p@0.1.0.wasm" | cut -d' ' -f1)"
done
