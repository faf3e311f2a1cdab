#!/usr/bin/env bash
# Fuzzes the running producer against openapi.yaml with Schemathesis (PyPI,
# pinned in requirements-dev.txt): every check, failing on any finding, so
# the document says exactly what the server does. Needs the stack up
# (`make up`, or scripts/test.sh runs it while its stack is up); the URL is
# $PRODUCER_URL, so any port works.
#
# What the local emulator cannot pass on is not sent: `cargo lambda watch`
# answers 500 by itself, before the function runs, to a header value or body
# holding bytes that are not UTF-8, which Schemathesis's coverage phase sends
# even with `--generation-codec ascii`. That is the emulator, not the product
# (in AWS, API Gateway takes such a request), so scripts/api_fuzz_hooks.py
# filters those cases out and every check judges the function's own
# answers. The function's log is read too: no panic, and no 5xx in the
# producer's own request lines, while the fuzzer ran. (Not every ERROR line:
# the consumer logs each message it dead-letters at ERROR, and messages of
# the tests before may still be retrying.)
#
# Every check but use_after_free: `DELETE /v1/messages/{id}` cancels, and the
# contract keeps the cancelled message readable (200, status `cancelled`),
# where that check expects a 404 after any DELETE.
#
# One worker: with two, Schemathesis's coverage phase failed with a
# "Runtime Error: AST constructor recursion depth mismatch" (Hypothesis
# parsing a lambda's source while another thread did the same) once the
# admin routes added path parameters; with one it ran clean
# (--include-path-regex 'admin|limits', 8027 cases, 0 errors).
#
# Bounded for `make test`: API_FUZZ_MAX_EXAMPLES cases per operation and
# phase (default 25), API_FUZZ_MAX_TIME seconds at most (default 100).
# API_FUZZ_SEED replays a run (Schemathesis prints the seed it used).
set -euo pipefail
source "$(dirname "$0")/env.sh"

log_file="$STACK_DIR/logs/lambda.log"
token=$("$ROOT/target/debug/devctl" token acct_1)
report_dir="$ROOT/target/api-fuzz"
mkdir -p "$report_dir"
log_start=$(wc -l <"$log_file" 2>/dev/null || echo 0)

seed=()
[[ -n "${API_FUZZ_SEED:-}" ]] && seed=(--seed "$API_FUZZ_SEED")

# One Schemathesis run; its output is kept for emulator_drop_only below.
fuzz() {
  local out="$1"
  (
    # From the report dir: Schemathesis and Hypothesis keep their caches
    # (.schemathesis/, .hypothesis/: earlier failures, replayed first) in the
    # working directory, which keeps them under target/.
    cd "$report_dir"
    SCHEMATHESIS_HOOKS=api_fuzz_hooks PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" \
      "$VENV/bin/st" run "$ROOT/openapi.yaml" \
      --url "$PRODUCER_URL" \
      -H "Authorization: Bearer $token" \
      --checks all \
      --exclude-checks use_after_free \
      --generation-codec ascii \
      --max-examples "${API_FUZZ_MAX_EXAMPLES:-25}" \
      --max-time "${API_FUZZ_MAX_TIME:-100}" \
      --request-timeout 20 \
      --workers 1 \
      --report junit --report-dir "$report_dir" \
      "${seed[@]}"
  ) 2>&1 | tee "$out"
  return "${PIPESTATUS[0]}"
}

# The function's own log since the run began: a panic or a 5xx it answered.
function_errors() {
  [[ -f "$log_file" ]] || { echo "api-fuzz: no function log at $log_file; cannot check it for errors" >&2; return 1; }
  tail -n "+$((log_start + 1))" "$log_file" | grep -E 'panicked|"message":"request".*"status":5[0-9]{2}' >"$report_dir/log-errors.txt"
}

# `cargo lambda watch` (1.9.2) sometimes answers 500 itself although the
# function answered 200. Our reading of its source: its runtime API replies to the function's response
# POST before it has read the body, and a large body (a page of campaign
# messages, ~40-200 KB) is then cut off (here: 1 of 200 GETs of a 185 KB
# page; docs/testing.md). Not the product's error, and AWS has no such
# step. True when every failure of the run is exactly that: only server-error
# and content-type findings, each answered with cargo-lambda's own
# text/plain problem body, as many as cargo-lambda logged failed responses,
# and no 5xx or panic in the function's own log.
emulator_drop_only() {
  local out="$1" cases bodies drops
  cases=$(grep -cE '^[0-9]+\. Test Case ID:' "$out" || true)
  bodies=$(grep -cF '`{"type":"https://httpstatuses.com/500","status":500,"title":"Internal Server Error"}`' "$out" || true)
  drops=$(tail -n "+$((log_start + 1))" "$log_file" 2>/dev/null | grep -c 'response failed classification=Status code: 500' || true)
  ((cases > 0 && bodies == cases && drops >= cases)) || return 1
  ! sed -n '/^Failures:/,/^$/p' "$out" | grep -E '❌' | grep -vqE 'ST101 Server error|ST105 Undocumented Content-Type'
}

# Up to three runs, each after one whose every failure was the emulator's
# drop (a fresh seed each time): on a loaded machine the drop can hit two
# runs in a row (2026-12-03: both runs of a CI, 1 case in ~1,700 each).
status=0
last="$report_dir/run-1.txt"
fuzz "$last" || status=$?
for run in 2 3; do
  ((status != 0)) && ! function_errors && emulator_drop_only "$last" || break
  echo "api-fuzz: every failure above is cargo lambda watch's own 500 for a response the function answered with 200 (see docs/testing.md); running again with a new seed (run $run of at most 3)" >&2
  seed=()
  log_start=$(wc -l <"$log_file" 2>/dev/null || echo 0)
  status=0
  last="$report_dir/run-$run.txt"
  fuzz "$last" || status=$?
done
# Still only the emulator's drop after the third run: the function answered
# every request (its log is checked below for any 5xx or panic), so the run
# passes, saying so. Any other finding has failed above.
if ((status != 0)) && ! function_errors && emulator_drop_only "$last"; then
  echo "api-fuzz: the third run's only findings are cargo lambda watch's own dropped responses as well; the function answered each with 200 (its log has no 5xx or panic): passing" >&2
  status=0
fi

if function_errors; then
  echo "api-fuzz: a panic or a 5xx in the function's log while the fuzzer ran (target/api-fuzz/log-errors.txt):" >&2
  head -n 20 "$report_dir/log-errors.txt" >&2
  status=1
fi
[[ -f "$log_file" ]] || status=1
exit "$status"
