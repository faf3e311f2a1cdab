#!/usr/bin/env bash
# Installs what the project needs, idempotently: a second run installs nothing.
#  - .venv/ with cargo-lambda, ziglang, moto[server] and the template checkers (PyPI)
#  - Debian's redis-server and openssl where missing: the test suite starts a
#    TLS-only redis-server of its own (shared/tests/redis_tls.rs, certificates
#    made with openssl), beside the Redis at REDIS_URL
set -euo pipefail
source "$(dirname "$0")/env.sh"

REQS="$ROOT/scripts/requirements-dev.txt"
# Pins and their constraints file: a change to either reinstalls.
stamp="$VENV/.installed-$(cat "$REQS" "$ROOT/scripts/constraints-dev.txt" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  log "installing Python tools into .venv (cargo-lambda, ziglang, moto[server], cfn-lint, aws-sam-translator, pytest, schemathesis)"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
  log "installing Debian's ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
