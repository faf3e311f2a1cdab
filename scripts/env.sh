# Shared defaults for the local stack (sourced by the other scripts).
# Every value can be overridden from the environment, as the contract says.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
export VENV="${VENV:-$ROOT/.venv}"
# What `scripts/stack.sh up` builds (debug): the functions and the dev tools;
# only the tools when the functions run in the release profile
# (WATCH_FLAGS with --release: cargo lambda watch builds those itself).
STACK_TOOLS=(-p onlyfans-stub -p sqs-trigger -p devctl)
STACK_PACKAGES=(-p producer -p consumer "${STACK_TOOLS[@]}")

# The functions' own settings are NOT given defaults here: scripts/stack.sh
# passes every one that is set on to them (devctl config-vars), and an unset
# one means the default in shared/src/config.rs, the one the README lists.
# The few set below are needed by the scripts and tools themselves, and may
# only hold the functions' default or a value the README's configuration
# table names as the local one (tools/devctl/tests/config_vars.rs checks).
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export SQS_PORT="${SQS_PORT:-4566}"
export AWS_ENDPOINT_URL_SQS="${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$SQS_PORT}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export QUEUE_NAME="${QUEUE_NAME:-outbound-messages}"
export STUB_PORT="${STUB_PORT:-8787}"
export ONLYFANS_API_URL="${ONLYFANS_API_URL:-http://127.0.0.1:$STUB_PORT}"
# The benchmark signs its tokens with it (the functions' default).
export AUTH_JWT_SECRET="${AUTH_JWT_SECRET:-local-dev-jwt-secret-change-me}"
export LAMBDA_PORT="${LAMBDA_PORT:-9000}"
export PRODUCER_URL="${PRODUCER_URL:-http://127.0.0.1:$LAMBDA_PORT/lambda-url/producer}"
export CONSUMER_INVOKE_URL="${CONSUMER_INVOKE_URL:-http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/consumer/invocations}"
# The local consumer's timeout is cargo lambda watch's; the queue hides a
# received message 6x that long, as AWS advises for an event source mapping.
export CONSUMER_TIMEOUT_SECS="${CONSUMER_TIMEOUT_SECS:-30}"
# The consumer reads its deadline from here (cargo lambda watch sends none).
export FUNCTION_TIMEOUT_SECS="${FUNCTION_TIMEOUT_SECS:-$CONSUMER_TIMEOUT_SECS}"
# The poller gives up on an invocation a little after cargo lambda watch would.
export INVOKE_TIMEOUT_MS="${INVOKE_TIMEOUT_MS:-$(( (CONSUMER_TIMEOUT_SECS + 5) * 1000 ))}"
export VISIBILITY_TIMEOUT="${VISIBILITY_TIMEOUT:-$((CONSUMER_TIMEOUT_SECS * 6))}"
export BATCH_SIZE="${BATCH_SIZE:-10}"
export BATCH_WINDOW_MS="${BATCH_WINDOW_MS:-0}"
# The consumer counts the trigger's batching window in how late a deferred
# message may come back (BATCHING_WINDOW_SECONDS, the template passes its
# own): locally it is the poller's, rounded up to whole seconds.
# (A BATCH_WINDOW_MS that is not a number is left to the poller to refuse.)
if [[ -z "${BATCHING_WINDOW_SECONDS+set}" && "$BATCH_WINDOW_MS" =~ ^[0-9]{1,9}$ ]]; then
  export BATCHING_WINDOW_SECONDS=$(( (10#$BATCH_WINDOW_MS + 999) / 1000 ))
fi
export MAX_CONCURRENCY="${MAX_CONCURRENCY:-2}"
# EMF metric lines are noise on a terminal.
export METRICS_DISABLED="${METRICS_DISABLED:-true}"
export RUST_LOG="${RUST_LOG:-info}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# cargo lambda watch 1.9.2 crashes the Lambda runtime client of the functions
# it restarts after a file change (a /next answer without a request id), so
# the stack does not hot-reload: after a code change, Ctrl-C and `make dev`.
# WATCH_FLAGS= (empty) turns hot reload back on.
export WATCH_FLAGS="${WATCH_FLAGS---ignore-changes}"

# Never fails: when `make dev` is piped (| tee) and Ctrl-C ends the reader,
# the clean-up must still run to the end.
log() { printf '\033[1m[stack]\033[0m %s\n' "$*" >&2 2>/dev/null || true; }

# True when something answers TCP on host:port.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Host and port of REDIS_URL.
redis_host() { local h="${REDIS_URL#*://}"; h="${h##*@}"; h="${h%%/*}"; echo "${h%%:*}"; }
redis_port() { local h="${REDIS_URL#*://}"; h="${h##*@}"; h="${h%%/*}"; [[ "$h" == *:* ]] && echo "${h##*:}" || echo 6379; }

# True when a Redis answers PING at REDIS_URL.
redis_answers() {
  local reply
  reply=$( (exec 3<>"/dev/tcp/$(redis_host)/$(redis_port)" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3) 2>/dev/null) || return 1
  [[ "$reply" == "+PONG" ]]
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@"; do
    if (( SECONDS - start > limit )); then log "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 0.5
  done
}
