#!/usr/bin/env bash
# `make bench`: the benchmarks. Writes target/bench/report.json, report.md,
# accuracy.png and the parts they are made of (target/bench/*.json).
#
#   1. limiter throughput: RedisLimiter::acquire vs redis-benchmark EVALSHA
#   2. delivery accuracy under backlog: spread deferral vs the naive baseline
#   3. intake: the producer's handler in process, and over HTTP with wrk
#   4. end to end: POST -> stub receipt
#   5. footprint: arm64 zips, start -> first /next, consumer peak RSS
#
# It runs its own stack on its own ports and STACK_DIR (never the defaults
# that `make test`/`make dev` use) and shares only the Redis server, in its
# own database (BENCH_REDIS_DB, default 9: other stacks' global keys such as
# the outbox stream stay apart), with account ids unique to the run; the
# run's Redis keys are deleted at the end. Every knob can be overridden with
# its BENCH_* variable.
#
# This script builds, then runs `bench` subcommands (tools/bench) in order;
# the stacks are theirs: `bench stack up|down` starts and stops the run's
# stack (its own SQS-compatible server, tools/bench/moto_server.py, which
# removes two costs proportional to the queue's length, or the stock one with
# BENCH_STOCK_MOTO=1; then scripts/stack.sh), and `bench accuracy-pair` runs
# the naive baseline on a stack of its own beside the spread run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# Own ports and stack directory, set before env.sh derives every URL from them.
export LAMBDA_PORT="${BENCH_LAMBDA_PORT:-9300}"
export SQS_PORT="${BENCH_SQS_PORT:-4596}"
export STUB_PORT="${BENCH_STUB_PORT:-8797}"
export STACK_DIR="${BENCH_STACK_DIR:-$ROOT/.stack/bench}"
export REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/${BENCH_REDIS_DB:-9}}"
unset AWS_ENDPOINT_URL_SQS ONLYFANS_API_URL PRODUCER_URL CONSUMER_INVOKE_URL \
  QUEUE_URL DLQ_URL INVOKE_TIMEOUT_MS VISIBILITY_TIMEOUT FUNCTION_TIMEOUT_SECS
# Accuracy settings: the rate scaled up so a 1,000-message backlog drains in
# ~100 s, eight concurrent consumer invocations.
export RATE_LIMIT_PER_MINUTE="${BENCH_RATE_LIMIT_PER_MINUTE:-600}"
export RATE_LIMIT_BURST="${BENCH_RATE_LIMIT_BURST:-10}"
export MAX_CONCURRENCY="${BENCH_MAX_CONCURRENCY:-8}"
export RUST_LOG="${BENCH_RUST_LOG:-info}"
# The functions run in the release profile under cargo lambda watch.
export WATCH_FLAGS="--ignore-changes --release"
# Status records of the run expire within the hour (if the functions see it).
export STATUS_TTL_SECONDS="${BENCH_STATUS_TTL_SECONDS:-3600}"
SPREAD_VISIBILITY_TIMEOUT="${BENCH_SPREAD_VISIBILITY_TIMEOUT:-180}"
SPREAD_IN_PROCESS_WAIT_MS="${BENCH_SPREAD_IN_PROCESS_WAIT_MS:-1500}"
NAIVE_VISIBILITY_TIMEOUT="${BENCH_NAIVE_VISIBILITY_TIMEOUT:-5}"
NAIVE_IN_PROCESS_WAIT_MS="${BENCH_NAIVE_IN_PROCESS_WAIT_MS:-0}"
WRK_SECONDS="${BENCH_WRK_SECONDS:-15}"
# The naive baseline's stack: its own ports and STACK_DIR, beside the spread one.
NAIVE_LAMBDA_PORT="${BENCH_NAIVE_LAMBDA_PORT:-9310}"
NAIVE_SQS_PORT="${BENCH_NAIVE_SQS_PORT:-4606}"
NAIVE_STUB_PORT="${BENCH_NAIVE_STUB_PORT:-8807}"
NAIVE_STACK_DIR="${BENCH_NAIVE_STACK_DIR:-$ROOT/.stack/bench-naive}"
source "$ROOT/scripts/env.sh"
export PATH="$VENV/bin:$PATH"

OUT="$ROOT/target/bench"
BENCH="$ROOT/target/release/bench"
RUN_ID="bench-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
STARTED=$SECONDS
STEP_STARTED=$SECONDS
declare -a TIMINGS=()

say() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
step() { # step NAME: closes the previous step's timing
  if [[ -n "${STEP_NAME:-}" ]]; then TIMINGS+=("$STEP_NAME $((SECONDS - STEP_STARTED))s"); fi
  STEP_NAME=$1 STEP_STARTED=$SECONDS
  say "== $1"
}
if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
apt_install() { # apt_install PACKAGE...
  say "installing $* (Debian)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

REDIS_PID=""
declare -A BUILD_PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${BUILD_PIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
    kill -CONT -- "-$pid" 2>/dev/null || true # a paused build cannot act on TERM
  done
  if [[ -x "$BENCH" ]]; then
    # Whatever stack is still up (an interrupted run's), then the run's keys.
    "$BENCH" stack down --stack-dir "$NAIVE_STACK_DIR" || true
    "$BENCH" stack down || true
    "$BENCH" cleanup --prefix "$RUN_ID" || true
  fi
  if [[ -n "$REDIS_PID" ]]; then kill -TERM "$REDIS_PID" 2>/dev/null || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/report.md "$OUT"/accuracy.png

# Builds: three trees, side by side at different priorities, so that one
# fills the cores another leaves idle (downloads, build scripts, the
# single-threaded fat-LTO links) without slowing it: the x86_64 release tree
# (bench tool and functions, what every measurement needs) at nice 0, the
# debug stack tools at nice 10, and the arm64 zips at nice 19 once setup has
# installed cargo-lambda. The arm64 build is paused while end to end and wrk
# run, resumed for the accuracy runs (the rate limit paces them, not the CPU)
# and waited for before the limiter, intake and start-up figures, which are
# measured with no build running.
bg_build() { # bg_build NAME NICENESS COMMAND: the shell COMMAND in the background,
  # in a session of its own (so an interrupted run stops the whole of it), at
  # that niceness, log in $OUT/NAME.log
  local name=$1 niceness=$2 cmd=$3
  # With the scheduler's autogroups (Linux's default), a new session is a
  # group of its own that competes with the others as a whole, whatever its
  # processes' niceness: the inner shell nices its group too.
  # shellcheck disable=SC2016 # $SECONDS and $rc expand in the inner shell
  setsid nice -n "$niceness" bash -c '{ echo '"$niceness"' >/proc/self/autogroup; } 2>/dev/null
    started=$SECONDS; ( '"$cmd"' ); rc=$?
    echo "'"$name"': exit $rc after $((SECONDS - started))s"; exit "$rc"' \
    >"$OUT/$name.log" 2>&1 </dev/null &
  BUILD_PIDS[$name]=$!
}
wait_builds() { # wait_builds NAME...: waits for those builds; shows a failed one's log
  local name failed=""
  for name in "$@"; do
    if ! wait "${BUILD_PIDS[$name]}"; then
      tail -n 30 "$OUT/$name.log" >&2
      failed=1
    fi
    unset "BUILD_PIDS[$name]"
    say "$(tail -n 1 "$OUT/$name.log")"
  done
  [[ -z "$failed" ]] || { say "a build failed"; exit 1; }
}
signal_build() { # signal_build STOP|CONT NAME: pauses or resumes a build still running
  if [[ -n "${BUILD_PIDS[$2]:-}" ]]; then kill "-$1" -- "-${BUILD_PIDS[$2]}" 2>/dev/null || true; fi
}

step "setup and builds: tools (.venv, wrk, redis-benchmark, matplotlib) while the x86_64 release and debug trees build"
# The bench tool and the functions (one invocation: the three fat-LTO links
# run side by side; the functions' units are those `cargo lambda watch
# --release` builds), and the stack's own tools (what `scripts/stack.sh up`
# builds).
bg_build release-build 0 "cargo build --release --quiet -p bench -p producer -p consumer"
bg_build debug-build 10 "cargo build --quiet ${STACK_TOOLS[*]}"
"$ROOT/scripts/setup.sh"
# The deployable zips, built and checked as `make test` does (shared artifacts).
bg_build arm64-build 19 "'$ROOT/scripts/build-lambdas.sh'"
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v redis-benchmark >/dev/null 2>&1 || apt_install redis-tools
PLOT_REQS="$ROOT/tools/bench/requirements.txt"
plot_stamp="$VENV/.bench-plot-$(sha256sum "$PLOT_REQS" | cut -c1-16)"
if [[ ! -f "$plot_stamp" ]]; then
  say "installing matplotlib into .venv"
  if "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PLOT_REQS"; then
    rm -f "$VENV"/.bench-plot-*
    touch "$plot_stamp"
  else
    say "matplotlib could not be installed: the report will have no plot"
  fi
fi

# The limiter and start-up benchmarks need Redis before any stack is up.
if ! redis_answers; then
  say "no Redis answers at $REDIS_URL: starting one for the run"
  mkdir -p "$STACK_DIR/logs"
  redis-server --bind "$(redis_host)" --port "$(redis_port)" --save "" --appendonly no \
    >"$STACK_DIR/logs/redis-bench.log" 2>&1 </dev/null &
  REDIS_PID=$!
  wait_for 20 "Redis" redis_answers
fi

wait_builds release-build debug-build

# The rest (MAX_CONCURRENCY, RATE_LIMIT_*, STUB_TOLERANCE_MS, the ports) it
# reads from the environment.
"$BENCH" settings --out "$OUT/stack-settings.json" \
  --spread-visibility-timeout "$SPREAD_VISIBILITY_TIMEOUT" \
  --spread-in-process-wait-ms "$SPREAD_IN_PROCESS_WAIT_MS" \
  --naive-visibility-timeout "$NAIVE_VISIBILITY_TIMEOUT" \
  --naive-in-process-wait-ms "$NAIVE_IN_PROCESS_WAIT_MS"

step "stack (spread deferral) on :$LAMBDA_PORT, :$SQS_PORT, :$STUB_PORT"
"$BENCH" stack up --label spread --strategy spread \
  --in-process-wait-ms "$SPREAD_IN_PROCESS_WAIT_MS" --visibility-timeout "$SPREAD_VISIBILITY_TIMEOUT"
# shellcheck disable=SC1091
source "$STACK_DIR/stack.env"
signal_build STOP arm64-build

step "4. end to end"
"$BENCH" e2e --out "$OUT/e2e.json" --prefix "$RUN_ID"

step "3b. intake over HTTP (SendMessage alone, then wrk; poller paused)"
"$BENCH" intake-http --out-dir "$OUT" --prefix "$RUN_ID" \
  --script "$ROOT/tools/bench/wrk-post.lua" --wrk-seconds "$WRK_SECONDS"

# From here to the accuracy runs' end the CPU is mostly idle: the zips build.
signal_build CONT arm64-build

step "2. accuracy: spread deferral and, beside it, the naive baseline (DEFERRAL_STRATEGY=naive, VISIBILITY_TIMEOUT=${NAIVE_VISIBILITY_TIMEOUT}s) on :$NAIVE_LAMBDA_PORT, :$NAIVE_SQS_PORT, :$NAIVE_STUB_PORT; arm64 zips building at nice 19"
"$BENCH" accuracy-pair --out-dir "$OUT" --prefix "$RUN_ID" \
  --naive-lambda-port "$NAIVE_LAMBDA_PORT" --naive-sqs-port "$NAIVE_SQS_PORT" \
  --naive-stub-port "$NAIVE_STUB_PORT" --naive-stack-dir "$NAIVE_STACK_DIR" \
  --naive-visibility-timeout "$NAIVE_VISIBILITY_TIMEOUT" \
  --naive-in-process-wait-ms "$NAIVE_IN_PROCESS_WAIT_MS"

step "5b. footprint: consumer peak RSS"
"$BENCH" rss --out "$OUT/rss.json" --name consumer

# Last on this stack: each round leaves 1,000 scheduled messages in the SQS
# stand-in, whose SendMessageBatch slows as its queue grows (tools/bench/src/campaign.rs).
step "4b. campaigns (POST /v1/campaigns with 1,000 recipients, 3 rounds)"
"$BENCH" campaign --out "$OUT/campaign.json" --prefix "$RUN_ID" --rounds 3 || true
"$BENCH" stack down

# A third run that separates the two halves of the design: deferral alone,
# without waiting in process (BENCH_NO_WAIT_RUN=1 adds it, ~2-4 minutes).
if [[ "${BENCH_NO_WAIT_RUN:-0}" == 1 ]]; then
  step "2c. accuracy: spread deferral without in-process waits (IN_PROCESS_WAIT_MS=0)"
  "$BENCH" stack up --label nowait --strategy spread \
    --in-process-wait-ms 0 --visibility-timeout "$SPREAD_VISIBILITY_TIMEOUT"
  # shellcheck disable=SC1091
  source "$STACK_DIR/stack.env"
  "$BENCH" accuracy --label nowait --prefix "$RUN_ID" --out "$OUT/accuracy-spread-nowait.json" \
    --poller-log "$STACK_DIR/logs/poller.log"
  "$BENCH" stack down
fi

step "arm64 zips (waiting for the background build)"
wait_builds arm64-build

# The figures the CPU can sway, on a machine with nothing else running.
step "1. limiter throughput"
"$BENCH" limiter --out "$OUT/limiter.json" --prefix "$RUN_ID-lim"

step "3a. intake: producer handler in process"
"$BENCH" intake-handler --out "$OUT/intake-handler.json"

step "5a. footprint: start -> first /next"
QUEUE_URL="$AWS_ENDPOINT_URL_SQS/123456789012/bench-init" \
  DLQ_URL="$AWS_ENDPOINT_URL_SQS/123456789012/bench-init-dlq" \
  "$BENCH" init-time --out "$OUT/init.json" \
  --binary "producer=$ROOT/target/release/producer" \
  --binary "consumer=$ROOT/target/release/consumer"

step "report"
"$BENCH" cleanup --prefix "$RUN_ID"
if "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  "$VENV/bin/python" "$ROOT/tools/bench/plot.py" "$OUT" || say "the plot failed"
fi
step "done"
"$BENCH" report --dir "$OUT" \
  --producer-zip "$ROOT/target/lambda-arm64/producer/bootstrap.zip" \
  --consumer-zip "$ROOT/target/lambda-arm64/consumer/bootstrap.zip" \
  --elapsed-s "$((SECONDS - STARTED))" --watch-profile release --rustc "$(rustc --version)"
say "steps: ${TIMINGS[*]/%/;}"
say "total $((SECONDS - STARTED))s; wrote $OUT/report.json, $OUT/report.md$([[ -f $OUT/accuracy.png ]] && echo ", $OUT/accuracy.png")"
