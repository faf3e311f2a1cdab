#!/usr/bin/env bash
# `make test`: every test. Starts the stack the integration tests need (the
# same setup as `make dev`, on its own settings below), runs the Rust tests,
# the template checks, and stops the stack again whatever happened.
set -euo pipefail
source "$(dirname "$0")/env.sh"

# Test settings (each overridable): a faster rate so limiter behaviour shows
# in seconds, eight concurrent consumer instances as in the acceptance tests,
# and the stub told the same limit the consumer keeps.
export RATE_LIMIT_PER_MINUTE="${TEST_RATE_LIMIT_PER_MINUTE:-600}"
export RATE_LIMIT_BURST="${TEST_RATE_LIMIT_BURST:-10}"
export MAX_CONCURRENCY="${TEST_MAX_CONCURRENCY:-8}"
export MAX_ATTEMPTS="${TEST_MAX_ATTEMPTS:-3}"
export STACK_DIR="$ROOT/.stack/test"

"$ROOT/scripts/setup.sh"

cleanup() { "$ROOT/scripts/stack.sh" down || true; }
trap cleanup EXIT
"$ROOT/scripts/stack.sh" up
source "$STACK_DIR/stack.env"

echo "== cargo test (unit and integration, against the running stack)"
cargo test --workspace --all-targets -- --test-threads "${TEST_THREADS:-4}"

echo "== Redis Cluster, short form: the shared adapters' Redis tests on a fresh 3-shard cluster (make test-cluster adds every stack test on it)"
"$ROOT/scripts/test-cluster.sh" adapters

echo "== API fuzzing (Schemathesis against openapi.yaml, every check, on the running stack)"
"$ROOT/scripts/api-fuzz.sh"

echo "== simulation, short form (smoke, backlog and a lossy Redis failover on virtual time; fails on any violation, loss, duplicate or throttle-only DLQ; make sim runs them all)"
cargo run --quiet -p sim -- --scenario smoke,backlog,redis-failover --out target/sim/short

echo "== fault injection (tests/faults/, on its own stack and Redis once the main stack is stopped)"
cleanup
"$ROOT/scripts/faults.sh" test

echo "== Redis Cluster fault case (a primary killed mid-delivery, its replica promoted; its own cluster and stack)"
"$ROOT/scripts/cluster-failover.sh" test

echo "== template checks"
"$ROOT/scripts/check-template.sh"
"$VENV/bin/python" -m pytest -q "$ROOT/tests/template"

echo "== lint (fmt, clippy)"
cargo fmt --all -- --check
# fuzz/ is a workspace of its own: --all does not reach it.
cargo fmt --manifest-path "$ROOT/fuzz/Cargo.toml" -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== deployable artifacts (cargo lambda build --release --arm64, as sam build runs it)"
"$ROOT/scripts/build-lambdas.sh"

echo "== fuzz (cargo-fuzz on stable, every target at once for ${TEST_FUZZ_SECONDS:-20} s; make fuzz runs longer)"
FUZZ_SECONDS="${TEST_FUZZ_SECONDS:-20}" "$ROOT/scripts/fuzz.sh"
