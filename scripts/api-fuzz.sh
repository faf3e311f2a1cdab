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

status=0
# From the report dir: Schemathesis and Hypothesis keep their caches
# (.schemathesis/, .hypothesis/: earlier failures, replayed first) in the
# working directory, which keeps them under target/.
cd "$report_dir"
SCHEMATHESIS_HOOKS=api_fuzz_hooks PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" \
  "$VENV/bin/st" run "$ROOT/openapi.yaml" \
  --url "$PRODUCER_URL" \
  -H "Authorization: Bearer $token" \
  --checks all \
  --generation-codec ascii \
  --max-examples "${API_FUZZ_MAX_EXAMPLES:-25}" \
  --max-time "${API_FUZZ_MAX_TIME:-100}" \
  --request-timeout 20 \
  --workers 2 \
  --report junit --report-dir "$report_dir" \
  "${seed[@]}" || status=$?

if [[ -f "$log_file" ]]; then
  if tail -n "+$((log_start + 1))" "$log_file" | grep -E 'panicked|"message":"request".*"status":5[0-9]{2}' >"$report_dir/log-errors.txt"; then
    echo "api-fuzz: a panic or a 5xx in the function's log while the fuzzer ran (target/api-fuzz/log-errors.txt):" >&2
    head -n 20 "$report_dir/log-errors.txt" >&2
    status=1
  fi
else
  echo "api-fuzz: no function log at $log_file; cannot check it for errors" >&2
  status=1
fi
exit "$status"
