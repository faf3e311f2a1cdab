#!/usr/bin/env bash
# The functions on a Redis Cluster (3 primaries + 3 replicas on one machine,
# scripts/redis-cluster.sh), as ElastiCache's cluster mode runs them.
#
#   test-cluster.sh adapters   the shared crate's Redis tests (limiter, store,
#                              idempotency, outbox, the fakes' contract) on a
#                              fresh cluster: the same test bodies as on one
#                              Redis, chosen by REDIS_CLUSTER_URL. The outbox
#                              test needs AWS_ENDPOINT_URL_SQS (a running
#                              stack's). `make test` runs this (short form).
#   test-cluster.sh long       `make test-cluster`: the stack on the cluster
#                              (REDIS_CLUSTER=true), the adapters' tests and
#                              every stack test against it, then the fault
#                              case (scripts/cluster-failover.sh)
#
# Ports: the cluster REDIS_CLUSTER_PORT_BASE .. +5 (default 7130-7135), the
# long form's stack CLUSTER_STACK_{LAMBDA,SQS,STUB}_PORT (default 9760-9762).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export REDIS_CLUSTER_PORT_BASE="${REDIS_CLUSTER_PORT_BASE:-7130}"
export REDIS_CLUSTER_DIR="$ROOT/.stack/test-cluster/cluster"
CLUSTER_URL="redis://127.0.0.1:$REDIS_CLUSTER_PORT_BASE"

log() { printf '\033[1m[test-cluster]\033[0m %s\n' "$*" >&2; }

adapter_tests() {
  log "the shared adapters' Redis tests on the cluster at $CLUSTER_URL"
  (cd "$ROOT" && REDIS_CLUSTER_URL="$CLUSTER_URL" cargo test -p shared --test redis --test outbox)
  (cd "$ROOT" && REDIS_CLUSTER_URL="$CLUSTER_URL" cargo test -p testkit --test contract)
}

cluster_down() { bash "$HERE/redis-cluster.sh" down || true; }

case "${1:-}" in
  adapters)
    trap cluster_down EXIT
    bash "$HERE/redis-cluster.sh" up
    adapter_tests
    ;;
  long)
    "$HERE/setup.sh"
    export STACK_DIR="$ROOT/.stack/test-cluster/stack"
    export LAMBDA_PORT="${CLUSTER_STACK_LAMBDA_PORT:-9760}"
    export SQS_PORT="${CLUSTER_STACK_SQS_PORT:-9761}"
    export STUB_PORT="${CLUSTER_STACK_STUB_PORT:-9762}"
    export REDIS_URL="$CLUSTER_URL" REDIS_CLUSTER=true
    unset AWS_ENDPOINT_URL_SQS ONLYFANS_API_URL PRODUCER_URL CONSUMER_INVOKE_URL QUEUE_URL DLQ_URL
    # As scripts/test.sh sets them for the stack tests.
    export RATE_LIMIT_PER_MINUTE="${TEST_RATE_LIMIT_PER_MINUTE:-600}"
    export RATE_LIMIT_BURST="${TEST_RATE_LIMIT_BURST:-10}"
    export MAX_CONCURRENCY="${TEST_MAX_CONCURRENCY:-8}"
    export MAX_ATTEMPTS="${TEST_MAX_ATTEMPTS:-3}"
    source "$HERE/env.sh"
    stack_down() { "$HERE/stack.sh" down || true; cluster_down; }
    trap stack_down EXIT
    bash "$HERE/redis-cluster.sh" up
    "$HERE/stack.sh" up
    source "$STACK_DIR/stack.env"
    adapter_tests
    log "every stack test, the functions on the cluster"
    (cd "$ROOT" && cargo test -p integration-tests --test stack -- --test-threads "${TEST_THREADS:-4}")
    stack_down
    trap - EXIT
    bash "$HERE/cluster-failover.sh" test
    ;;
  *) echo "usage: $0 adapters|long" >&2; exit 2 ;;
esac
