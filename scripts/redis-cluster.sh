#!/usr/bin/env bash
# A local Redis Cluster: 3 primaries + 3 replicas on one machine, as
# ElastiCache's cluster mode deploys them (3 shards, 1 replica each).
#
#   redis-cluster.sh up      start six redis-server --cluster-enabled yes and
#                            create the cluster (all 16,384 slots covered)
#   redis-cluster.sh down    stop exactly those six (by their recorded PIDs)
#   redis-cluster.sh check   run every script the functions use (the limiter,
#                            the status transition) through the cluster with
#                            one account's keys, and show they land in one slot
#   redis-cluster.sh kill PORT       kill -9 the node on PORT (a primary dies)
#   redis-cluster.sh takeover PORT   promote PORT's replica now (CLUSTER FAILOVER
#                            TAKEOVER on it; the cluster would after
#                            cluster-node-timeout) and wait for cluster_state:ok
#   redis-cluster.sh start PORT      start the node on PORT again: with its
#                            nodes.conf it rejoins as a replica of whoever
#                            took its slots (ElastiCache's node replacement)
#   redis-cluster.sh primary-of KEY  the port of the primary serving KEY
#   redis-cluster.sh migrate KEY PORT [BATCH] [PAUSE_S]
#                            move KEY's slot to the primary on PORT as
#                            `redis-cli --cluster reshard` does (IMPORTING /
#                            MIGRATING, MIGRATE, SETSLOT NODE), BATCH keys
#                            (default 5) every PAUSE_S seconds (default 0.25),
#                            so clients meet ASK and TRYAGAIN meanwhile;
#                            prints "SLOT FROM TO KEYS"
#
# Ports REDIS_CLUSTER_PORT_BASE .. +5 (default 7130-7135; bus ports +10000),
# files in REDIS_CLUSTER_DIR (default .stack/redis-cluster). The functions use
# it with REDIS_CLUSTER=true and REDIS_URL=redis://127.0.0.1:<base>
# (make test-cluster; docs/reliability.md, "Cluster mode").
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DIR="${REDIS_CLUSTER_DIR:-$ROOT/.stack/redis-cluster}"
BASE="${REDIS_CLUSTER_PORT_BASE:-7130}"
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE + i))); done

log() { printf '\033[1m[cluster]\033[0m %s\n' "$*" >&2; }

up() {
  [[ ! -d "$DIR" ]] || down
  local p
  for p in "${PORTS[@]}"; do
    mkdir -p "$DIR/$p"
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is taken"; return 1; fi
    node_start "$p"
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 1 50); do
      [[ "$(redis-cli -p "$p" PING 2>/dev/null)" == PONG ]] && break
      sleep 0.1
    done
  done
  local addrs=()
  for p in "${PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log"
  for _ in $(seq 1 100); do
    [[ "$(redis-cli -p "$BASE" CLUSTER INFO | tr -d '\r' | grep -c '^cluster_state:ok')" == 1 ]] && break
    sleep 0.2
  done
  redis-cli -p "$BASE" CLUSTER INFO | tr -d '\r' | grep -E '^cluster_(state|slots_assigned|known_nodes|size):'
  log "cluster up on ${PORTS[0]}-${PORTS[5]}"
}

node_start() { # node_start PORT: one cluster node, its PID in $DIR/PORT/pid
  local p=$1
  setsid redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$DIR/$p/nodes.conf" --dir "$DIR/$p" \
    --cluster-node-timeout "${REDIS_CLUSTER_NODE_TIMEOUT_MS:-5000}" \
    --save "" --appendonly no --daemonize no >>"$DIR/$p/log" 2>&1 </dev/null &
  echo $! >"$DIR/$p/pid"
}

node_kill() {
  local p=$1 pid
  pid=$(cat "$DIR/$p/pid") || { log "no node recorded on $p"; return 1; }
  kill -KILL "$pid" 2>/dev/null || true
  log "killed the node on $p (pid $pid)"
}

cluster_ok() { # cluster_ok PORT: that node sees every slot served
  [[ "$(redis-cli -p "$1" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep -c '^cluster_state:ok')" == 1 ]]
}

takeover() { # takeover PORT: promote the replica of the (dead) primary on PORT
  local p=$1 id q replica=""
  id=$(awk '/myself/ { print $1 }' "$DIR/$p/nodes.conf")
  for q in "${PORTS[@]}"; do
    [[ "$q" == "$p" ]] && continue
    if redis-cli -p "$q" CLUSTER NODES 2>/dev/null |
      awk -v me="$id" '/myself/ && $4 == me { f = 1 } END { exit !f }'; then
      replica=$q
    fi
  done
  [[ -n "$replica" ]] || { log "no replica of the node on $p (promoted already?)"; return 1; }
  redis-cli -p "$replica" CLUSTER FAILOVER TAKEOVER >/dev/null
  for _ in $(seq 1 100); do
    if [[ "$(redis-cli -p "$replica" ROLE | head -1)" == master ]] && cluster_ok "$replica"; then
      log "the replica on $replica took over from $p"
      echo "$replica"
      return 0
    fi
    sleep 0.1
  done
  log "the replica on $replica did not take over"
  return 1
}

primary_of() { # primary_of KEY: the port of the primary serving KEY (the others answer MOVED)
  local q
  for q in "${PORTS[@]}"; do
    if [[ "$(redis-cli -p "$q" EXISTS "$1" 2>/dev/null)" =~ ^[0-9]+$ ]]; then
      echo "$q"
      return 0
    fi
  done
  return 1
}

migrate() {
  local key=$1 to=$2 batch=${3:-5} pause=${4:-0.25} from slot from_id to_id q moved=0 out
  local keys=()
  from=$(primary_of "$key") || { log "no primary serves $key"; return 1; }
  [[ "$from" != "$to" ]] || { log "$key is on $to already"; return 1; }
  slot=$(redis-cli -p "$from" CLUSTER KEYSLOT "$key")
  from_id=$(redis-cli -p "$from" CLUSTER MYID)
  to_id=$(redis-cli -p "$to" CLUSTER MYID)
  # The order redis-cli --cluster reshard uses: the target imports first, so
  # an ASK from the source always finds it ready.
  redis-cli -p "$to" CLUSTER SETSLOT "$slot" IMPORTING "$from_id" | grep -q OK
  redis-cli -p "$from" CLUSTER SETSLOT "$slot" MIGRATING "$to_id" | grep -q OK
  log "slot $slot: migrating from $from to $to, $batch keys every ${pause}s"
  while :; do
    mapfile -t keys < <(redis-cli -p "$from" CLUSTER GETKEYSINSLOT "$slot" "$batch" | tr -d '\r')
    ((${#keys[@]})) && [[ -n "${keys[0]}" ]] || break
    out=$(redis-cli -p "$from" MIGRATE 127.0.0.1 "$to" "" 0 5000 KEYS "${keys[@]}")
    [[ "$out" == OK || "$out" == NOKEY ]] || { log "MIGRATE answered: $out"; return 1; }
    moved=$((moved + ${#keys[@]}))
    sleep "$pause"
  done
  # The slot's new owner: the target first, then the source, then everyone
  # else (replicas refuse SETSLOT; they learn it from their primaries).
  redis-cli -p "$to" CLUSTER SETSLOT "$slot" NODE "$to_id" | grep -q OK
  redis-cli -p "$from" CLUSTER SETSLOT "$slot" NODE "$to_id" | grep -q OK
  for q in "${PORTS[@]}"; do
    [[ "$q" == "$to" || "$q" == "$from" ]] && continue
    redis-cli -p "$q" CLUSTER SETSLOT "$slot" NODE "$to_id" >/dev/null 2>&1 || true
  done
  log "slot $slot: now on $to ($moved keys moved)"
  echo "$slot $from $to $moved"
}

down() {
  [[ -d "$DIR" ]] || return 0
  local p pid
  for p in "${PORTS[@]}"; do
    pid=$(cat "$DIR/$p/pid" 2>/dev/null) || continue
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR"
  log "cluster down"
}

check() {
  local acct="cluster_check_$RANDOM" k
  # The keys of one account, as shared/src/keys.rs names them.
  local keys=("of:{$acct}:bucket" "of:{$acct}:horizon:high" "of:{$acct}:pause" "of:{$acct}:limits" "of:{$acct}:msg:x" "of:{$acct}:claim:x")
  local slots=()
  for k in "${keys[@]}"; do slots+=("$(redis-cli -p "$BASE" CLUSTER KEYSLOT "$k")"); done
  echo "slots of one account's keys: ${slots[*]}"
  [[ "$(printf '%s\n' "${slots[@]}" | sort -u | wc -l)" == 1 ]] || { log "keys of one account in several slots"; return 1; }
  # The limiter script itself, through the cluster (-c follows MOVED).
  # KEYS: bucket, horizon, pause, limits; ARGV: per minute, burst, reserve %,
  # client clock (0: Redis TIME), key TTL ms, holds a slot.
  redis-cli -c -p "$BASE" EVAL "$(cat "$ROOT/shared/src/limiter/token_bucket.lua")" 4 \
    "${keys[0]}" "${keys[1]}" "${keys[2]}" "${keys[3]}" 10 10 0 0 86400000 0
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  check) check ;;
  kill) node_kill "${2:?port}" ;;
  takeover) takeover "${2:?port}" ;;
  start) node_start "${2:?port}"; for _ in $(seq 1 50); do [[ "$(redis-cli -p "$2" PING 2>/dev/null)" == PONG ]] && break; sleep 0.1; done ;;
  primary-of) primary_of "${2:?key}" ;;
  migrate) migrate "${2:?key}" "${3:?port}" "${4:-5}" "${5:-0.25}" ;;
  *) echo "usage: $0 up|down|check|kill PORT|takeover PORT|start PORT|primary-of KEY|migrate KEY PORT [BATCH] [PAUSE_S]" >&2; exit 2 ;;
esac
