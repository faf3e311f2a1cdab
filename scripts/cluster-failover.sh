#!/usr/bin/env bash
# The Redis Cluster fault case (tests/cluster_failover/): a 3-shard cluster
# (3 primaries + 3 replicas, scripts/redis-cluster.sh), the fault stack on it
# (scripts/faults.sh) with REDIS_CLUSTER=true and REDIS_WAIT_REPLICAS=1, and
# a primary killed mid-delivery, its replica promoted, the dead node back as
# a replica; then an account's slot migrated to another shard mid-backlog
# (ASK, TRYAGAIN). `make test-cluster` and `make test` run it.
#
#   cluster-failover.sh test    build, cluster up, fault stack up, the case, all down
#   cluster-failover.sh down    stop what `test` left (after an interrupted run)
#
# Ports: the cluster on CLUSTER_FAILOVER_PORT_BASE .. +5 (default 7160-7165,
# bus +10000), the stack on CLUSTER_FAILOVER_{LAMBDA,SQS,STUB}_PORT (default
# 9750-9752).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DIR="$ROOT/.stack/cluster-failover"

export REDIS_CLUSTER_PORT_BASE="${CLUSTER_FAILOVER_PORT_BASE:-7160}"
export REDIS_CLUSTER_DIR="$DIR/cluster"
export FAULT_STACK_DIR="$DIR/stack"
export FAULT_LAMBDA_PORT="${CLUSTER_FAILOVER_LAMBDA_PORT:-9750}"
export FAULT_SQS_PORT="${CLUSTER_FAILOVER_SQS_PORT:-9751}"
export FAULT_STUB_PORT="${CLUSTER_FAILOVER_STUB_PORT:-9752}"
export FAULT_REDIS_URL="redis://127.0.0.1:$REDIS_CLUSTER_PORT_BASE"
export REDIS_CLUSTER=true
# Every token, claim and final status confirmed by its shard's replica: the
# promoted replica has every one the functions acted on.
export REDIS_WAIT_REPLICAS=1
export CLUSTER_SCRIPT="$HERE/redis-cluster.sh"

log() { printf '\033[1m[cluster-failover]\033[0m %s\n' "$*" >&2 2>/dev/null || true; }

down_all() {
  bash "$HERE/faults.sh" down || true
  bash "$HERE/redis-cluster.sh" down || true
}

case "${1:-}" in
  test)
    "$HERE/setup.sh"
    (cd "$ROOT" && cargo test --quiet -p integration-tests --test cluster_failover --no-run)
    trap down_all EXIT
    bash "$HERE/redis-cluster.sh" up
    bash "$HERE/faults.sh" up
    FAULT_TEST=cluster_failover bash "$HERE/faults.sh" run
    ;;
  down) down_all ;;
  *) echo "usage: $0 test|down" >&2; exit 2 ;;
esac
