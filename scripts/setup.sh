#!/usr/bin/env bash
# Installs everything the project needs, idempotently: Debian packages, the pinned Rust
# toolchain with the wasm32-wasip2 target, Kafka jars from Maven Central, and FerretDB built
# from the Go module proxy. Fast when everything is already there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# --- Debian packages -------------------------------------------------------------------------
# curl, jq and redis-cli: docs/migration.md runs them as written (tests/it/docs_migration.rs);
# python3-venv: componentize-py gets a venv of its own (below).
PKGS=(redis-server redis-tools cmake libcurl4-openssl-dev libssl-dev libsasl2-dev zlib1g-dev pkg-config python3 python3-venv curl jq chromium chromium-driver)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "apt: packages present"
fi
for tool in java mvn go; do command -v "$tool" >/dev/null || die "$tool is required (Java 17+, Maven, Go 1.22+); install it first"; done

# --- Rust toolchain --------------------------------------------------------------------------
channel="$(toolchain_channel)"
if rustup run "$channel" rustc --version >/dev/null 2>&1 && rustup target list --toolchain "$channel" --installed | grep -q wasm32-wasip2; then
  log "rust: $channel with wasm32-wasip2 present"
else
  log "rust: installing $channel with wasm32-wasip2"
  rustup toolchain install "$channel" --profile minimal -c rustfmt -c clippy -t wasm32-wasip2
  rustup target add wasm32-wasip2 --toolchain "$channel"
fi

# --- Kafka jars ------------------------------------------------------------------------------
if [ -f "$KAFKA_LIBS/.complete" ]; then
  log "kafka $KAFKA_VERSION: jars cached"
else
  log "kafka $KAFKA_VERSION: downloading jars from Maven Central"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" -Dkafka.version="$KAFKA_VERSION"
  touch "$KAFKA_LIBS/.complete"
fi

# --- FerretDB --------------------------------------------------------------------------------
# `go install` builds a binary that panics at start: its embedded build/version/version.txt is
# empty. Build from a copy of the module with the version written in.
if [ -x "$FERRETDB_BIN" ]; then
  log "ferretdb $FERRETDB_VERSION: built"
else
  log "ferretdb $FERRETDB_VERSION: building from the Go module proxy (about a minute)"
  build_log="$RTSCORE_CACHE/build/ferretdb-build.log"
  mkdir -p "$RTSCORE_CACHE/build"
  src_dir="$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>"$build_log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
    || die "cannot download FerretDB from the Go module proxy (see $build_log)"
  work="$RTSCORE_CACHE/build/ferretdb-$FERRETDB_VERSION"
  rm -rf "$work"
  cp -r "$src_dir" "$work"; chmod -R u+w "$work"
  echo "$FERRETDB_VERSION" > "$work/build/version/version.txt"
  mkdir -p "$(dirname "$FERRETDB_BIN")"
  (cd "$work" && go build -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb >>"$build_log" 2>&1) || die "FerretDB build failed (see $build_log)"
  mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
fi
# --- Python plugin toolchain -------------------------------------------------------------------
# componentize-py builds guest-sdk-py plugins into components (scripts/build-plugins.sh); a venv
# of its own under the cache, never the system's site-packages.
if [ -x "$COMPONENTIZE_PY" ] && [ "$("$COMPONENTIZE_PY" --version 2>/dev/null)" = "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
  log "componentize-py $COMPONENTIZE_PY_VERSION: installed"
else
  log "componentize-py $COMPONENTIZE_PY_VERSION: installing from PyPI into $COMPONENTIZE_PY_VENV"
  # Into its final place (a venv's scripts name their interpreter by absolute path); a broken
  # install fails the version check above next time and is made again.
  rm -rf "$COMPONENTIZE_PY_VENV"
  python3 -m venv "$COMPONENTIZE_PY_VENV"
  "$COMPONENTIZE_PY_VENV/bin/pip" install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

# --- JavaScript plugin toolchain ---------------------------------------------------------------
# componentize-js builds guest-sdk-js plugins; its npm package carries the StarlingMonkey engine
# (a wasm file) and wizer's Linux binary, so nothing else is downloaded.
if [ -x "$COMPONENTIZE_JS" ] && [ "$("$COMPONENTIZE_JS" --version 2>/dev/null)" = "$COMPONENTIZE_JS_VERSION" ]; then
  log "componentize-js $COMPONENTIZE_JS_VERSION: installed"
else
  command -v npm >/dev/null || die "npm is required (Node.js 20+) for the JavaScript plugins; install it first"
  log "componentize-js $COMPONENTIZE_JS_VERSION: installing from npm into $COMPONENTIZE_JS_DIR (a few minutes)"
  rm -rf "$COMPONENTIZE_JS_DIR"
  mkdir -p "$COMPONENTIZE_JS_DIR"
  echo '{"name": "rtscore-js-toolchain", "private": true}' > "$COMPONENTIZE_JS_DIR/package.json"
  npm install --prefix "$COMPONENTIZE_JS_DIR" --no-audit --no-fund --loglevel=error --save-exact \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >/dev/null
fi
log "setup: done"
