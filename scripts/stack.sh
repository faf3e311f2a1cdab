#!/usr/bin/env bash
# The local stack: Redis (if none answers), the SQS-compatible server, the
# queues, the OnlyFans stub, both functions under `cargo lambda watch`, and
# the SQS trigger poller.
#
#   stack.sh up     start everything in the background, record PIDs, wait until ready
#   stack.sh down   stop exactly what `up` started (by the recorded PIDs)
#   stack.sh dev    `up`, print the URLs and a ready-to-paste curl, follow the
#                   logs; Ctrl-C stops everything it started and nothing else
set -euo pipefail
source "$(dirname "$0")/env.sh"
export PATH="$VENV/bin:$PATH"
PIDS="$STACK_DIR/pids"
DEVCTL="${DEVCTL:-$ROOT/target/debug/devctl}"
LOGS="$STACK_DIR/logs"

start() { # start NAME COMMAND... : own process group (setsid), PID recorded
  local name=$1; shift
  local keep="$STACK_DIR/restart/$name"
  mkdir -p "$LOGS" "$keep"
  # How it was started (command line, environment, directory; NUL-separated),
  # so `scripts/faults.sh start NAME` can start it again exactly so.
  printf '%s\0' "$@" >"$keep/cmdline"
  env -0 >"$keep/environ"
  pwd >"$keep/cwd"
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo "$name $!" >>"$PIDS"
  log "started $name (pid $!, log ${LOGS#$ROOT/}/$name.log)"
}

stop_all() {
  [[ -f "$PIDS" ]] || return 0
  local name pid
  # Reverse order: the poller first, Redis last.
  tac "$PIDS" | while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      log "stopped $name (pid $pid)"
    fi
  done
  rm -f "$PIDS"
}

http_ok() { curl -s -o /dev/null -m 300 "$1"; }

# The configuration the functions see (cargo lambda watch passes the file
# on), on stdout: every variable they read (`devctl config-vars`: the list in
# shared/src/config.rs and telemetry.rs) that is set here, whatever its name,
# so any setting given to `make dev`/`make up`/`make test` reaches them and
# an unset one means the functions' own default; then what only the stack
# decides. (`stack.sh functions-env` prints it; tools/devctl/tests holds it
# to the README.)
functions_env() {
  local names name
  names=$("$DEVCTL" config-vars)
  for name in $names; do
    if [[ -n "${!name+set}" ]]; then printf '%s=%s\n' "$name" "${!name}"; fi
  done
  cat <<ENV
AWS_ENDPOINT_URL_SQS=$AWS_ENDPOINT_URL_SQS
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
LOCAL_MAX_CONCURRENCY=$MAX_CONCURRENCY
ENV
}

up() {
  if [[ -f "$PIDS" ]]; then
    log "a stack is already recorded in $PIDS; run 'make down' first"
    exit 1
  fi
  mkdir -p "$STACK_DIR" "$LOGS"
  "$ROOT/scripts/setup.sh"

  if redis_answers; then
    log "using the Redis that answers at $REDIS_URL"
  else
    start redis redis-server --bind "$(redis_host)" --port "$(redis_port)" --save "" --appendonly no
    wait_for 20 "Redis" redis_answers
  fi

  if port_open 127.0.0.1 "$SQS_PORT"; then
    log "something already listens on $SQS_PORT; using it as the SQS-compatible server"
  else
    start sqs moto_server -H 127.0.0.1 -p "$SQS_PORT"
    wait_for 30 "the SQS-compatible server" port_open 127.0.0.1 "$SQS_PORT"
  fi

  log "building the functions and dev tools (the first build takes a few minutes)"
  if [[ " $WATCH_FLAGS " == *" --release "* ]]; then
    cargo build --quiet "${STACK_TOOLS[@]}"
  else
    cargo build --quiet "${STACK_PACKAGES[@]}"
  fi

  local urls
  # The redrive maxReceiveCount is MAX_RECEIVE_COUNT, the consumer's own
  # default when unset (devctl reads both).
  urls=$("$DEVCTL" create-queues --name "$QUEUE_NAME" --visibility-timeout "$VISIBILITY_TIMEOUT")
  export QUEUE_URL="${QUEUE_URL:-$(sed -n 's/^QUEUE_URL=//p' <<<"$urls")}"
  export DLQ_URL="${DLQ_URL:-$(sed -n 's/^DLQ_URL=//p' <<<"$urls")}"

  STUB_ADDR="127.0.0.1:$STUB_PORT" start stub "$ROOT/target/debug/onlyfans-stub"
  wait_for 30 "the OnlyFans stub" port_open 127.0.0.1 "$STUB_PORT"

  functions_env >"$STACK_DIR/functions.env"
  # No `--timeout`: cargo lambda watch applies it to every route, the runtime
  # API's long poll for the next event included, so a function left idle that
  # long got a 408 without a request id, its runtime panicked, and watch never
  # starts a function again once its process has exited. Invocations are
  # bounded by their caller (the poller's INVOKE_TIMEOUT_MS) and by the
  # consumer's own deadline (FUNCTION_TIMEOUT_SECS) instead.
  # shellcheck disable=SC2086
  start lambda cargo-lambda lambda watch -A 127.0.0.1 -P "$LAMBDA_PORT" \
    --env-file "$STACK_DIR/functions.env" ${WATCH_FLAGS:-}
  wait_for 60 "cargo lambda watch" port_open 127.0.0.1 "$LAMBDA_PORT"
  log "warming both functions (each compiles on its first request)"
  wait_for 600 "the producer" http_ok "$PRODUCER_URL/health"
  wait_for 600 "the consumer" curl -sf -o /dev/null -m 300 -H 'content-type: application/json' \
    -d '{"Records":[]}' "$CONSUMER_INVOKE_URL"

  start poller "$ROOT/target/debug/sqs-trigger"
  # The local stand-in for the EventBridge schedule that replays the outbox.
  start replay "$DEVCTL" replay --every 5

  cat >"$STACK_DIR/stack.env" <<ENV
export QUEUE_URL=$QUEUE_URL
export DLQ_URL=$DLQ_URL
ENV
  log "stack is up"
}

banner() {
  # shellcheck disable=SC1091
  source "$STACK_DIR/stack.env"
  local token
  token=$("$ROOT/target/debug/devctl" token acct_1)
  cat <<INFO

  Producer (HTTP)   $PRODUCER_URL
  Consumer invoke   $CONSUMER_INVOKE_URL
  SQS-compatible    $AWS_ENDPOINT_URL_SQS   queue $QUEUE_URL
  OnlyFans stub     $ONLYFANS_API_URL   (GET /__requests, /__stats)
  Redis             $REDIS_URL

  Send a message as acct_1:

  curl -i -X POST '$PRODUCER_URL/v1/messages' \\
    -H 'Authorization: Bearer $token' \\
    -H 'Content-Type: application/json' \\
    -d '{"recipientId":"fan_123","content":"Hello!","priority":"high"}'

  Then: curl -s '$ONLYFANS_API_URL/__requests' ; Ctrl-C stops the stack.

INFO
}

case "${1:-}" in
  # `up` runs in its own process so that `set -e` holds inside it; if it
  # fails, whatever it had started is stopped again.
  _up) up ;;
  up) bash "$0" _up || { log "start-up failed; stopping what was started"; stop_all; exit 1; } ;;
  down) stop_all ;;
  dev)
    bash "$0" _up || { log "start-up failed; stopping what was started"; stop_all; exit 1; }
    trap 'stop_all' EXIT
    trap 'exit 0' INT TERM
    trap '' PIPE
    banner
    tail -n 0 -F "$LOGS"/*.log &
    wait
    ;;
  banner) banner ;;
  functions-env) functions_env ;;
  *) echo "usage: $0 up|down|dev|functions-env" >&2; exit 2 ;;
esac
