#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the parsers
# and the producer's handler, on stable Rust. `make test` runs it briefly.
#
#   scripts/fuzz.sh [TARGET...]        default: every target in fuzz/fuzz_targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh   seconds per target (default 60; 0 skips)
#   FUZZ_TARGET_DIR=...                 build directory (default fuzz/target)
#
# Targets run at the same time, one libFuzzer process each, so the wall time
# is about FUZZ_SECONDS whatever their number (they share the cores).
# Installs cargo-fuzz into .cargo-tools/ if it is missing (crates.io, once).
#
# Stable Rust: cargo-fuzz's default AddressSanitizer needs `-Zsanitizer`, a
# nightly flag, so the targets are built with `--sanitizer none`; everything
# else it passes (`-Cpasses=sancov-module`, `-Cllvm-args=...`, `--cfg
# fuzzing`) is stable. Safe Rust needs no ASan to catch what matters here:
# a panic (unwrap, index, overflow: debug assertions are on) aborts the run
# and leaves the input in fuzz/artifacts/<target>/. `--dev` builds in a
# fraction of the time of a release build on 2 cores; fuzz/Cargo.toml
# optimises the few crates the targets spend their time in.
#
# The corpus each run grows is kept in fuzz/corpus/<target>/ (not committed);
# fuzz/seeds/<target>/ holds the small committed seeds. Logs go to
# fuzz/artifacts/<target>.log.
set -euo pipefail
source "$(dirname "$0")/env.sh"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"
TOOLS="${CARGO_TOOLS_ROOT:-$ROOT/.cargo-tools}"
FUZZ_DIR="$ROOT/fuzz"
FLAGS=(--sanitizer none --dev)
# FUZZ_TARGET_DIR: build somewhere that outlives this checkout (a fresh
# clone otherwise compiles the instrumented dependency tree again).
[[ -n "${FUZZ_TARGET_DIR:-}" ]] && FLAGS+=(--target-dir "$FUZZ_TARGET_DIR")

fuzz_log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }

if [[ "$("$TOOLS/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  fuzz_log "installing cargo-fuzz $CARGO_FUZZ_VERSION into ${TOOLS#"$ROOT/"}/ (once)"
  # --debug: it only drives cargo and libFuzzer, and builds in half the time.
  cargo install --quiet --locked --debug --root "$TOOLS" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
export PATH="$TOOLS/bin:$PATH"

# libFuzzer reads -max_total_time=0 as "forever": 0 here means no fuzzing.
if [[ ! "$FUZZ_SECONDS" =~ ^[0-9]+$ ]] || ((FUZZ_SECONDS == 0)); then
  fuzz_log "FUZZ_SECONDS=$FUZZ_SECONDS: nothing to do (give a positive number of seconds)"
  exit 0
fi

if (($#)); then
  targets=("$@")
else
  targets=()
  for f in "$FUZZ_DIR"/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

cd "$ROOT"
start=$SECONDS
fuzz_log "building the fuzz targets (cargo fuzz build ${FLAGS[*]})"
mkdir -p "$FUZZ_DIR/artifacts"
if ! cargo fuzz build "${FLAGS[@]}" >"$FUZZ_DIR/artifacts/build.log" 2>&1; then
  grep -Ev '^\s+(Compiling|Fresh|Downloaded|Downloading)' "$FUZZ_DIR/artifacts/build.log" | tail -60 >&2
  fuzz_log "build failed (full log: fuzz/artifacts/build.log)"
  exit 1
fi
fuzz_log "built in $((SECONDS - start)) s; fuzzing each target for ${FUZZ_SECONDS} s"

declare -A pids
for t in "${targets[@]}"; do
  mkdir -p "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/artifacts/$t"
  # -timeout: an input that takes 10 s is a hang, and a failure.
  cargo fuzz run "${FLAGS[@]}" "$t" "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/seeds/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -dict="$FUZZ_DIR/dict/json.dict" \
    -print_final_stats=1 >"$FUZZ_DIR/artifacts/$t.log" 2>&1 &
  pids[$t]=$!
done

failed=()
for t in "${targets[@]}"; do
  if wait "${pids[$t]}"; then
    # libFuzzer's closing line: runs, coverage, corpus size, speed.
    fuzz_log "$t: ok: $(grep -E '^#[0-9]+\s+DONE' "$FUZZ_DIR/artifacts/$t.log" | tail -1 | tr -s ' \t' ' ')"
  else
    failed+=("$t")
    fuzz_log "$t: FAILED (full log: fuzz/artifacts/$t.log)"
    # The panic and its message, what libFuzzer made of it, and the input.
    log_file="$FUZZ_DIR/artifacts/$t.log"
    { grep -m1 -A6 'panicked at' "$log_file" || true
      grep -E 'ERROR: libFuzzer|SUMMARY: libFuzzer|Test unit written to' "$log_file" || true
    } | sed 's/^/    /' >&2
  fi
done

fuzz_log "done in $((SECONDS - start)) s"
if ((${#failed[@]})); then
  fuzz_log "failing: ${failed[*]}; reproduce with: PATH=\"$TOOLS/bin:\$PATH\" cargo fuzz run ${FLAGS[*]} <target> fuzz/artifacts/<target>/crash-..."
  exit 1
fi
