#!/usr/bin/env bash
# The failover case (tests/failover/): a backlog delivered through the real
# consumer while its Redis fails over to an asynchronous replica that lacks
# the last second of writes. `make failover` runs it twice, without and with
# REDIS_WAIT_REPLICAS (shared/src/durability.rs), on a fresh pair each time.
#
#   failover.sh test          build; for WAIT off then on: pair-up, the fault
#                             stack (scripts/faults.sh) on it, the case, down
#   failover.sh pair-up|pair-down   the Redis pair and its two proxies
#   failover.sh lag           stop the replication link (SIGSTOP): the
#                             replica stops receiving, the primary goes on
#   failover.sh promote       kill the primary and the link (the held-back
#                             stream is lost), REPLICAOF NO ONE on the
#                             replica, point the endpoint at it and drop
#                             every client connection
#   failover.sh replace       a new replica of the promoted one on the old
#                             primary's port (ElastiCache's node replacement)
#
# The pair (ports 7100-7103 by default, FAILOVER_PORT_BASE):
#   primary  :base      redis-server, no persistence (a replica is the copy)
#   link     :base+1    tcp_proxy.py to the primary; the replica replicates
#                       through it, so stopping it makes the replica lag
#   replica  :base+2    redis-server --replicaof 127.0.0.1 base+1
#   endpoint :base+3    tcp_proxy.py to whichever is primary: the functions'
#                       REDIS_URL, as ElastiCache's primary endpoint (a DNS
#                       name that moves to the promoted replica) is theirs
#
# Why a proxy rather than restarting the functions with the new URL: warm
# Lambda instances keep their configuration through a failover; what changes
# under them is where the endpoint's name resolves, and their connections
# drop. The proxy does exactly that (SIGHUP: new target, every connection
# closed), so the case exercises redis-rs's reconnect as AWS would.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DIR="$ROOT/.stack/failover"
PAIR="$DIR/pair"
BASE="${FAILOVER_PORT_BASE:-7100}"
P_PRIMARY=$BASE P_LINK=$((BASE + 1)) P_REPLICA=$((BASE + 2)) P_ENDPOINT=$((BASE + 3))

# The fault stack, on ports of its own (9700-9702) and on the endpoint.
export FAULT_STACK_DIR="$DIR/stack"
export FAULT_LAMBDA_PORT="${FAILOVER_LAMBDA_PORT:-9700}"
export FAULT_SQS_PORT="${FAILOVER_SQS_PORT:-9701}"
export FAULT_STUB_PORT="${FAILOVER_STUB_PORT:-9702}"
export FAULT_REDIS_URL="redis://127.0.0.1:$P_ENDPOINT"

log() { printf '\033[1m[failover]\033[0m %s\n' "$*" >&2 2>/dev/null || true; }
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
pong() { [[ "$(cli "$1" PING 2>/dev/null)" == PONG ]]; }

wait_until() { # wait_until SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@"; do
    if (( SECONDS - start > limit )); then log "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 0.2
  done
}

start() { # start NAME COMMAND...: own process group, PID in $PAIR/NAME.pid
  local name=$1; shift
  setsid "$@" >>"$PAIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PAIR/$name.pid"
}

pid_of() { cat "$PAIR/$1.pid" 2>/dev/null; }

kill_one() { # kill_one NAME SIGNAL
  local pid
  pid=$(pid_of "$1") || return 0
  kill -CONT -- "-$pid" 2>/dev/null || true
  kill "-$2" -- "-$pid" 2>/dev/null || true
}

in_sync() {
  [[ "$(cli "$P_REPLICA" INFO replication | tr -d '\r' | grep -c '^master_link_status:up')" == 1 ]]
}

pair_up() {
  [[ ! -d "$PAIR" ]] || pair_down
  mkdir -p "$PAIR"
  for p in $P_PRIMARY $P_LINK $P_REPLICA $P_ENDPOINT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is taken"; return 1; fi
  done
  local common=(--bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$PAIR")
  start primary redis-server --port "$P_PRIMARY" "${common[@]}" --dbfilename primary.rdb
  wait_until 20 "the primary" pong "$P_PRIMARY"
  echo "127.0.0.1:$P_PRIMARY" >"$PAIR/link.target"
  start link python3 "$HERE/tcp_proxy.py" --listen "$P_LINK" --target-file "$PAIR/link.target"
  wait_until 20 "the link proxy" pong "$P_LINK"
  start replica redis-server --port "$P_REPLICA" "${common[@]}" --dbfilename replica.rdb \
    --replicaof 127.0.0.1 "$P_LINK" --repl-diskless-load disabled
  wait_until 20 "the replica" pong "$P_REPLICA"
  wait_until 30 "the replica in sync" in_sync
  echo "127.0.0.1:$P_PRIMARY" >"$PAIR/endpoint.target"
  start endpoint python3 "$HERE/tcp_proxy.py" --listen "$P_ENDPOINT" --target-file "$PAIR/endpoint.target"
  wait_until 20 "the endpoint proxy" pong "$P_ENDPOINT"
  log "pair up: primary :$P_PRIMARY, replica :$P_REPLICA via link :$P_LINK, endpoint :$P_ENDPOINT"
}

pair_down() {
  [[ -d "$PAIR" ]] || return 0
  local name
  for name in endpoint replica link primary; do kill_one "$name" KILL; done
  rm -rf "$PAIR"
}

repl_offset() { cli "$1" INFO replication | tr -d '\r' | sed -n "s/^$2:\\([0-9]*\\)$/\\1/p"; }

lag() {
  kill -STOP -- "-$(pid_of link)"
  log "replication link stopped (primary offset $(repl_offset "$P_PRIMARY" master_repl_offset))"
}

promote() {
  local primary_offset
  primary_offset=$(repl_offset "$P_PRIMARY" master_repl_offset)
  kill_one primary KILL
  # The stream the stopped link holds dies with it.
  kill_one link KILL
  cli "$P_REPLICA" REPLICAOF NO ONE >/dev/null
  echo "127.0.0.1:$P_REPLICA" >"$PAIR/endpoint.target"
  kill -HUP "$(pid_of endpoint)"
  local replica_offset
  replica_offset=$(repl_offset "$P_REPLICA" master_repl_offset)
  # What the case reads: how much of the replication stream was lost.
  echo "primary_offset=$primary_offset replica_offset=$replica_offset"
  log "promoted the replica: primary was at offset $primary_offset, the replica at $replica_offset"
}

replace() {
  # ElastiCache replaces the failed node with a new replica of the promoted
  # one: the same here, on the old primary's port, straight to the replica.
  local common=(--bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$PAIR")
  start primary redis-server --port "$P_PRIMARY" "${common[@]}" --dbfilename new-replica.rdb \
    --replicaof 127.0.0.1 "$P_REPLICA"
  wait_until 30 "the new replica in sync" in_sync_at "$P_PRIMARY"
  log "a new replica on :$P_PRIMARY follows the promoted one"
}

in_sync_at() {
  [[ "$(cli "$1" INFO replication | tr -d '\r' | grep -c '^master_link_status:up')" == 1 ]]
}

run_case() { # run_case off|on
  local mode=$1 replicas=0
  [[ "$mode" == on ]] && replicas=1
  pair_up
  REDIS_WAIT_REPLICAS=$replicas bash "$HERE/faults.sh" up
  REDIS_WAIT_REPLICAS=$replicas FAULT_TEST=failover FAILOVER_SCRIPT="$HERE/failover.sh" \
    bash "$HERE/faults.sh" run
}

down_all() {
  bash "$HERE/faults.sh" down || true
  pair_down
}

case "${1:-}" in
  pair-up) pair_up ;;
  pair-down) pair_down ;;
  lag) lag ;;
  promote) promote ;;
  replace) replace ;;
  down) down_all ;;
  run) run_case "${2:?off or on}" ;;
  # The case again on a stack `run` left up (after a failure).
  again)
    REDIS_WAIT_REPLICAS="${2:?replicas}" FAULT_TEST=failover FAILOVER_SCRIPT="$HERE/failover.sh" \
      bash "$HERE/faults.sh" run
    ;;
  test)
    "$HERE/setup.sh"
    cargo test --quiet -p integration-tests --test failover --no-run
    trap down_all EXIT
    for mode in ${FAILOVER_MODES:-off on}; do
      log "the case with REDIS_WAIT_REPLICAS $([[ $mode == on ]] && echo 1 || echo 0)"
      run_case "$mode"
      down_all
    done
    ;;
  *) echo "usage: $0 test|run off|on|down|pair-up|pair-down|lag|promote" >&2; exit 2 ;;
esac
