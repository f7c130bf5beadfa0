#!/usr/bin/env bash
# Builds the Python and JavaScript ports of the reference plugins (plugins/<name>/python/app.py,
# plugins/<name>/js/plugin.js) into components of WIT world rtscore:scoring/scorer, placed as
# <name>-py@<version>.wasm and <name>-js@<version>.wasm in $RTSCORE_PLUGINS_OUT beside the Rust
# builds (run by scripts/build-plugins.sh; the toolchains come from scripts/setup.sh).
#
# An interpreter component takes tens of seconds to build: each is rebuilt only when one of its
# inputs changed (its sources, the language's SDK, wit/, the pinned toolchain), recorded in a
# `.<file>.inputs` stamp beside it. Without the toolchain of a language (setup.sh not run), its
# plugins are skipped with a message, so the Rust-only demo still builds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
out="${RTSCORE_PLUGINS_OUT:-$ROOT/target/plugins}"
mkdir -p "$out"

# inputs_digest TOOL PATH...: a digest of the toolchain's name and version and of the files a
# component is built from.
inputs_digest() {
  local tool="$1"; shift
  { printf '%s\n' "$tool" "$@"; find "$@" -type f \( -name '*.py' -o -name '*.js' -o -name '*.wit' -o -name '*.json' \) \
      ! -name 'test_*' ! -name '*.test.js' ! -path '*/__pycache__/*' ! -path '*/node_modules/*' -print0 | sort -z | xargs -0 sha256sum; } \
    | sha256sum | cut -d' ' -f1
}

# place SRC_WASM DEST: rename into place (a watching host never reads half a module) and print
# the line build-plugins.sh prints for every module.
place() {
  mv "$1" "$2"
  printf '%-28s %8s bytes  %s\n' "$(basename "$2" .wasm)" "$(stat -c %s "$2")" "$(sha256sum "$2" | cut -d' ' -f1)"
}

up_to_date() { [ -f "$1" ] && [ -f "$(dirname "$1")/.$(basename "$1").inputs" ] && [ "$(cat "$(dirname "$1")/.$(basename "$1").inputs")" = "$2" ]; }
stamp() { printf '%s\n' "$2" > "$(dirname "$1")/.$(basename "$1").inputs"; }

# A component whose inputs did not change: its name, size and sha256, as the Rust plugins print.
report_unchanged() { printf '%-28s %8s bytes  %s  (unchanged)\n' "$(basename "$1" .wasm)" "$(stat -c %s "$1")" "$(sha256sum "$1" | cut -d' ' -f1)"; }

version_of() { sed -n 's/^version *= *"\(.*\)"/\1/p' "$1/Cargo.toml" | head -n 1; }

# --- Python (componentize-py) ------------------------------------------------------------------
py_dirs=(plugins/*/python)
if [ -e "${py_dirs[0]}" ]; then
  if [ ! -x "$COMPONENTIZE_PY" ]; then
    log "componentize-py $COMPONENTIZE_PY_VERSION missing ($COMPONENTIZE_PY): Python plugins skipped; run scripts/setup.sh"
  else
    for dir in "${py_dirs[@]}"; do
      crate="$(dirname "$dir")"
      name="$(basename "$crate")-py"
      dest="$out/$name@$(version_of "$crate").wasm"
      digest="$(inputs_digest "componentize-py $COMPONENTIZE_PY_VERSION" "$dir" guest-sdk-py/rtscore_guest wit/scoring.wit)"
      if up_to_date "$dest" "$digest"; then
        report_unchanged "$dest"
        continue
      fi
      log "building $name with componentize-py $COMPONENTIZE_PY_VERSION (tens of seconds) ..."
      # -p: the plugin's directory and the SDK are the module search path; `app` is the module
      # that defines WitWorld. componentize-py pre-initialises the interpreter (the imports are
      # done at build time), so a host instantiates a snapshot.
      "$COMPONENTIZE_PY" -d wit -w scorer componentize -p "$dir" -p guest-sdk-py app -o "$dest.tmp" >/dev/null
      place "$dest.tmp" "$dest"
      stamp "$dest" "$digest"
    done
  fi
fi

# --- JavaScript (componentize-js) --------------------------------------------------------------
js_dirs=(plugins/*/js)
if [ -e "${js_dirs[0]}" ]; then
  if [ ! -x "$COMPONENTIZE_JS" ]; then
    log "componentize-js $COMPONENTIZE_JS_VERSION missing ($COMPONENTIZE_JS): JavaScript plugins skipped; run scripts/setup.sh"
  else
    for dir in "${js_dirs[@]}"; do
      crate="$(dirname "$dir")"
      name="$(basename "$crate")-js"
      dest="$out/$name@$(version_of "$crate").wasm"
      digest="$(inputs_digest "componentize-js $COMPONENTIZE_JS_VERSION" "$dir" guest-sdk-js/src wit/scoring.wit)"
      if up_to_date "$dest" "$digest"; then
        report_unchanged "$dest"
        continue
      fi
      log "building $name with componentize-js $COMPONENTIZE_JS_VERSION (tens of seconds) ..."
      # The entry module's imports (the SDK by relative path) are read and evaluated at build
      # time (wizer snapshots the initialised engine). `-d http fetch-event`: no wasi:http
      # imports, which the host's sandbox does not link.
      "$COMPONENTIZE_JS" --wit wit --world-name scorer -d http fetch-event -o "$dest.tmp" "$dir/plugin.js" >/dev/null
      place "$dest.tmp" "$dest"
      stamp "$dest" "$digest"
    done
  fi
fi
