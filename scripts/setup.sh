#!/usr/bin/env bash
# Installs what the project needs, idempotently: a second run installs nothing.
#  - .venv/ with cargo-lambda, ziglang, moto[server] and the template checkers (PyPI)
#  - Debian's redis-server, only when no Redis answers at REDIS_URL and none is installed
set -euo pipefail
source "$(dirname "$0")/env.sh"

REQS="$ROOT/scripts/requirements-dev.txt"
stamp="$VENV/.installed-$(sha256sum "$REQS" | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  log "installing Python tools into .venv (cargo-lambda, ziglang, moto[server], cfn-lint, aws-sam-translator, pytest)"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

if ! redis_answers && ! command -v redis-server >/dev/null 2>&1; then
  log "no Redis answers at $REDIS_URL and redis-server is not installed: installing Debian's redis-server"
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
