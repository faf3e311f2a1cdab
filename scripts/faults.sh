#!/usr/bin/env bash
# The fault-injection suite's own stack (tests/faults/): the same services as
# `make test`, on their own ports and with their own Redis, so faults (a
# stopped Redis, a paused SQS server, a killed consumer) never touch another
# stack on this machine.
#
#   faults.sh test         build, `up`, run the suite, `down` (whatever happens)
#   faults.sh up | down    the fault stack in the background / stopped again
#   faults.sh run [FILTER] the suite against a fault stack that is up
#   faults.sh redis-stop   stop its Redis (SIGTERM, as a failover would)
#   faults.sh redis-start  start it again on the same port and data directory
#   faults.sh stop NAME    stop one process of the stack (`stub`, `lambda`, ...)
#   faults.sh start NAME   start it again as `up` recorded it, and record its new PID
#   faults.sh restart NAME both
#
# Its Redis persists every write (AOF, fsync always) in the stack directory,
# so a restart keeps buckets, statuses and claims, as a replicated
# ElastiCache failover does; the suite restarts it mid-delivery.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Everything is set here rather than inherited: scripts/test.sh runs this
# with the main stack's settings exported, and env.sh keeps what is set.
# FAULT_STACK_DIR and FAULT_REDIS_URL let scripts/failover.sh run this
# stack on its own directory and on a Redis it manages itself (a replicated
# pair behind a proxy); then `up`/`down` leave Redis alone.
STACK_DIR="${FAULT_STACK_DIR:-$(cd "$HERE/.." && pwd)/.stack/faults}"
export STACK_DIR
export LAMBDA_PORT="${FAULT_LAMBDA_PORT:-9400}"
export SQS_PORT="${FAULT_SQS_PORT:-4606}"
export STUB_PORT="${FAULT_STUB_PORT:-8807}"
FAULT_REDIS_PORT="${FAULT_REDIS_PORT:-6391}"
export REDIS_URL="${FAULT_REDIS_URL:-redis://127.0.0.1:$FAULT_REDIS_PORT}"
# Derived by env.sh from the ports above.
unset AWS_ENDPOINT_URL_SQS ONLYFANS_API_URL PRODUCER_URL CONSUMER_INVOKE_URL \
  INVOKE_TIMEOUT_MS QUEUE_URL DLQ_URL FUNCTION_TIMEOUT_SECS
# Test settings: the test rate, four concurrent consumer invocations, three
# attempts, a breaker that opens after 3 failures for 3 s, and short timeouts
# so that every fault plays out in seconds. The consumer's deadline (10 s,
# FUNCTION_TIMEOUT_SECS) and the poller's wait for an invocation (15 s) are
# under the visibility timeout (20 s): a record is never handed out twice
# while its first delivery may still be running. One upstream call
# (UPSTREAM_TIMEOUT_MS + 1 s of record budget) fits in the deadline, and the
# claim lease (UPSTREAM_TIMEOUT_MS + 5 s) has ended when a record of a killed
# invocation comes back.
export RATE_LIMIT_PER_MINUTE=600 RATE_LIMIT_BURST=10
export RATE_LIMITER_ENABLED=true RATE_LIMITER_ROLLOUT_PERCENT=100
export MAX_CONCURRENCY=4 BATCH_SIZE=10 BATCH_WINDOW_MS=0
export MAX_ATTEMPTS=3 MAX_RECEIVE_COUNT=100
export CONSUMER_TIMEOUT_SECS=10 VISIBILITY_TIMEOUT=20
export UPSTREAM_TIMEOUT_MS=2000 UPSTREAM_CONNECT_TIMEOUT_MS=1000
export BREAKER_FAILURE_THRESHOLD=3 BREAKER_OPEN_SECS=3
export DEFERRAL_STRATEGY=spread IN_PROCESS_WAIT_MS=1500
export WATCH_FLAGS="--ignore-changes"
export FAULTS_STACK=1
# shellcheck source=scripts/env.sh
source "$HERE/env.sh"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

REDIS_DIR="$STACK_DIR/redis"
REDIS_PID="$STACK_DIR/redis.pid"

redis_start() {
  [[ -z "${FAULT_REDIS_URL:-}" ]] || return 0
  mkdir -p "$REDIS_DIR" "$STACK_DIR/logs"
  if redis_answers; then log "a Redis already answers at $REDIS_URL"; return 1; fi
  setsid redis-server --bind 127.0.0.1 --port "$FAULT_REDIS_PORT" --dir "$REDIS_DIR" \
    --appendonly yes --appendfsync always --save "" --daemonize no \
    >>"$STACK_DIR/logs/redis.log" 2>&1 </dev/null &
  echo $! >"$REDIS_PID"
  wait_for 20 "the fault stack's Redis" redis_answers
  log "fault stack Redis on $REDIS_URL (pid $(cat "$REDIS_PID"), data in $REDIS_DIR)"
}

redis_stop() {
  [[ -z "${FAULT_REDIS_URL:-}" ]] || return 0
  [[ -f "$REDIS_PID" ]] || return 0
  local pid
  pid=$(cat "$REDIS_PID")
  if kill -0 "$pid" 2>/dev/null; then
    # SIGTERM: Redis fsyncs its AOF and exits.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    log "stopped the fault stack's Redis (pid $pid)"
  fi
  rm -f "$REDIS_PID"
}

recorded_pid() { # recorded_pid NAME: the PID stack.sh recorded for NAME
  awk -v n="$1" '$1 == n { p = $2 } END { if (p) print p; else exit 1 }' "$STACK_DIR/pids"
}

# How each process was started: stack.sh's start() records its command
# line, environment and directory in $STACK_DIR/restart/NAME as it starts
# it; `start` runs exactly that, whatever became of the process since.
RECORDED="$STACK_DIR/restart"

proc_stop() { # proc_stop NAME: stop its process group
  local name=$1 pid
  pid=$(recorded_pid "$name") || { log "no $name recorded in $STACK_DIR/pids"; return 1; }
  kill -0 "$pid" 2>/dev/null || { log "$name (pid $pid) is not running"; return 1; }
  kill -CONT -- "-$pid" 2>/dev/null || true
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  log "stopped $name (pid $pid)"
}

proc_start() { # proc_start NAME: start it as `up` recorded it, record the new PID
  local name=$1 keep="$RECORDED/$1" pid
  local -a argv envv
  [[ -f "$keep/cmdline" ]] || { log "no command recorded for $name in $RECORDED"; return 1; }
  if pid=$(recorded_pid "$name") && kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) is still running; stop it first"; return 1
  fi
  mapfile -d '' argv <"$keep/cmdline"
  mapfile -d '' envv <"$keep/environ"
  (
    cd "$(cat "$keep/cwd")"
    setsid env -i "${envv[@]}" "${argv[@]}" >>"$STACK_DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$keep/pid"
  )
  pid=$(cat "$keep/pid")
  sed -i "s/^$name [0-9]*\$/$name $pid/" "$STACK_DIR/pids"
  log "started $name again (pid $pid)"
  case "$name" in
    stub) wait_for 30 "the OnlyFans stub" port_open 127.0.0.1 "$STUB_PORT" ;;
    lambda)
      # cargo lambda watch starts a function on its first invocation: warm both.
      wait_for 60 "cargo lambda watch" port_open 127.0.0.1 "$LAMBDA_PORT"
      # (A first start runs `cargo run`, which waits for the build lock
      # while something else builds in the shared target directory.)
      wait_for 600 "the producer" curl -sf -o /dev/null -m 60 "$PRODUCER_URL/health"
      wait_for 600 "the consumer" curl -sf -o /dev/null -m 60 -H 'content-type: application/json' \
        -d '{"Records":[]}' "$CONSUMER_INVOKE_URL"
      ;;
  esac
}

down() {
  # The suite may leave the SQS server paused if it was interrupted: resume
  # it so that it can be stopped.
  if [[ -f "$STACK_DIR/pids" ]]; then
    local name pid
    while read -r name pid; do
      [[ "$name" == sqs ]] && kill -CONT -- "-$pid" 2>/dev/null || true
    done <"$STACK_DIR/pids"
  fi
  "$HERE/stack.sh" down || true
  redis_stop
  rm -rf "$RECORDED"
}

up() {
  if [[ -f "$STACK_DIR/pids" || -f "$REDIS_PID" ]]; then
    log "a fault stack is recorded in $STACK_DIR; stopping it first"
    down
  fi
  # A fresh data directory each time: nothing carries over between runs.
  rm -rf "$REDIS_DIR"
  redis_start
  "$HERE/stack.sh" up || { redis_stop; return 1; }
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  redis-start) redis_start ;;
  redis-stop) redis_stop ;;
  stop) proc_stop "${2:?name}" ;;
  start) proc_start "${2:?name}" ;;
  restart) proc_stop "${2:?name}" && proc_start "$2" ;;
  run)
    shift
    # shellcheck disable=SC1091
    source "$STACK_DIR/stack.env"
    # One test at a time: a stopped Redis or a paused SQS server touches
    # every message in flight. --nocapture shows what each case saw.
    # FAULT_TEST: another test target on this stack (scripts/failover.sh's).
    cargo test -p integration-tests --test "${FAULT_TEST:-faults}" -- --ignored --test-threads 1 --nocapture "$@"
    ;;
  test)
    "$HERE/setup.sh"
    # Compile the suite before the stack is up (the stack's own build is
    # mostly shared with it).
    cargo test --quiet -p integration-tests --test faults --no-run
    trap down EXIT
    up
    bash "$HERE/faults.sh" run
    ;;
  *) echo "usage: $0 test|up|down|run [FILTER]|redis-start|redis-stop|stop NAME|start NAME|restart NAME" >&2; exit 2 ;;
esac
