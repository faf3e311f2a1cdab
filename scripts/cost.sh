#!/usr/bin/env bash
# `make cost`: the monthly bill of template.yaml per Profile (tools/cost/cost.py).
# Needs only the template checkers in .venv (aws-sam-translator, cfn-lint),
# installed here if missing, as scripts/check-template.sh does. No AWS account,
# no network beyond that install.
#   scripts/cost.sh [--volume N] [--accounts N] [--backlogged 0.1] [--profile small|production]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "cost: creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import cfnlint, samtranslator' 2>/dev/null; then
    echo "cost: installing cfn-lint and aws-sam-translator into $VENV"
    "$VENV/bin/pip" install --quiet cfn-lint aws-sam-translator
fi
exec "$PY" tools/cost/cost.py "$@"
