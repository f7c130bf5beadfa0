# Shared settings for the project's scripts (sourced, not run).
# Everything installed or run lives outside the repo, under $RTSCORE_CACHE.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RTSCORE_CACHE="${RTSCORE_CACHE:-$HOME/.cache/rtscore}"
STACK_DIR="${RTSCORE_STACK_DIR:-$RTSCORE_CACHE/stack}"
KAFKA_VERSION="4.1.0"
FERRETDB_VERSION="v1.24.0"
KAFKA_LIBS="$RTSCORE_CACHE/kafka-$KAFKA_VERSION/libs"
FERRETDB_BIN="$RTSCORE_CACHE/bin/ferretdb-$FERRETDB_VERSION"
# Toolchains of the Python and JavaScript plugins (guest-sdk-py/, guest-sdk-js/), pinned:
# componentize-py from PyPI in a venv of its own, installed by setup.sh.
COMPONENTIZE_PY_VERSION="0.25.1"
COMPONENTIZE_PY_VENV="$RTSCORE_CACHE/componentize-py-$COMPONENTIZE_PY_VERSION"
COMPONENTIZE_PY="$COMPONENTIZE_PY_VENV/bin/componentize-py"
# componentize-js from npm (with the StarlingMonkey engine and wizer it ships), in a directory
# of its own.
COMPONENTIZE_JS_VERSION="0.23.0"
COMPONENTIZE_JS_DIR="$RTSCORE_CACHE/componentize-js-$COMPONENTIZE_JS_VERSION"
COMPONENTIZE_JS="$COMPONENTIZE_JS_DIR/node_modules/.bin/componentize-js"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
FERRETDB_PORT="${FERRETDB_PORT:-27018}"
REDIS_PORT="${REDIS_PORT:-16379}"

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
toolchain_channel() { sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml"; }
# A MONGODB_URL that is not the local FerretDB means a real MongoDB: FerretDB is not managed.
external_mongo() {
  [ -n "${MONGODB_URL:-}" ] && [[ "$MONGODB_URL" != *"127.0.0.1:$FERRETDB_PORT"* ]] && [[ "$MONGODB_URL" != *"localhost:$FERRETDB_PORT"* ]]
}

# The shared Cargo target outlives clones, and every dependency or flag change leaves a new set
# of multi-hundred-MB test binaries behind. When it passes the cap, or the disk runs low, drop the
# profile being built (a cold rebuild, a few minutes) rather than fail the link with a full disk.
prune_target_cache() {
  local dir="$1" profile="$2" cap_gb="${RTSCORE_TARGET_CAP_GB:-40}" min_free_gb="${RTSCORE_MIN_FREE_GB:-15}"
  [ -d "$dir/$profile" ] || return 0
  local used_gb free_gb
  used_gb=$(du -s --block-size=1G "$dir" | cut -f1)
  free_gb=$(df --output=avail --block-size=1G "$dir" | tail -1 | tr -d ' ')
  if [ "$used_gb" -gt "$cap_gb" ] || [ "$free_gb" -lt "$min_free_gb" ]; then
    log "target cache $dir: ${used_gb} GB used, ${free_gb} GB free (cap ${cap_gb} GB, floor ${min_free_gb} GB): removing its $profile profile"
    rm -rf "${dir:?}/$profile"
  fi
}

# What test.sh and bench.sh both need before building: tools installed, the local stack up and
# its addresses exported, the shared Cargo target (pruned for `profile`), and where the plugins
# are built. The plugin tests reuse the wasm builds instead of building the modules again.
prepare_build_env() {
  local profile="$1"
  bash "$ROOT/scripts/setup.sh"
  # Tests and benches use unique topics and databases: a service they start cold starts empty.
  bash "$ROOT/scripts/stack.sh" start --fresh
  eval "$(bash "$ROOT/scripts/stack.sh" env)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RTSCORE_CACHE/target}"
  prune_target_cache "$CARGO_TARGET_DIR" "$profile"
  export RTSCORE_PLUGINS_OUT="${RTSCORE_PLUGINS_OUT:-$CARGO_TARGET_DIR/plugins}"
  export RTSCORE_TEST_PLUGINS_OUT="${RTSCORE_TEST_PLUGINS_OUT:-$CARGO_TARGET_DIR/test-plugins}"
  export RTSCORE_TEST_WASM_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release"
}
