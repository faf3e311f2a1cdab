#!/usr/bin/env bash
# Offline checks of the AWS SAM template (no AWS account, no Docker, no network
# unless a tool is missing from .venv):
#
#   1. translate template.yaml (SAM) to plain CloudFormation with
#      aws-sam-translator -> target/template/translated.json
#      (tests/template/translate.py, the same code the pytest checks use);
#   2. cfn-lint the SAM template AND the translation: linting the SAM template
#      alone does not look inside AWS::Serverless::Function (a wrong runtime or
#      architecture passes), the translation does; then the translation
#      resolved for each Profile (production, small, and production with
#      RedisClusterMode=enabled) ->
#      target/template/translated-<profile>.json;
#   3. `sam validate --lint`, only if the SAM CLI is on PATH.
#
# Any cfn-lint error or warning fails the script. (On the translation that
# includes each function's LoggingConfig.ApplicationLogLevel: a parameter
# value Lambda does not know, such as WARNING, is W1030.) A check we decide to ignore
# goes into .cfnlintrc (ignore_checks) with the reason next to it.
#
# The assertions about what the template means (IAM, encryption, routes,
# alarms...) are in tests/template/test_template.py:
#   .venv/bin/python -m pytest tests/template
#
# Usage: scripts/check-template.sh [TEMPLATE]   (default: template.yaml)
set -euo pipefail

TEMPLATE_ARG="${1:-}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TEMPLATE="${TEMPLATE_ARG:-template.yaml}"

VENV=.venv
PY="$VENV/bin/python"
TRANSLATED=target/template/translated.json

# The translator builds ARNs for the region it runs in; any region will do.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

# The tools normally come with the project's .venv; install what is missing so
# the script also works on a fresh checkout.
if [[ ! -x "$PY" ]]; then
    echo "check-template: creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import cfnlint, samtranslator' 2>/dev/null || [[ ! -x "$VENV/bin/cfn-lint" ]]; then
    echo "check-template: installing cfn-lint and aws-sam-translator into $VENV"
    "$VENV/bin/pip" install --quiet cfn-lint aws-sam-translator
fi

status=0

echo "== translate $TEMPLATE -> $TRANSLATED"
rm -f "$TRANSLATED"
"$PY" tests/template/translate.py "$TEMPLATE" "$TRANSLATED" || status=1

echo "== cfn-lint $TEMPLATE"
"$VENV/bin/cfn-lint" "$TEMPLATE" || status=1

if [[ -f "$TRANSLATED" && $status -eq 0 ]]; then
    echo "== cfn-lint $TRANSLATED"
    "$VENV/bin/cfn-lint" "$TRANSLATED" || status=1
    # The translation as CloudFormation deploys it for each Profile (its
    # conditions decided, the other profile's resources gone), linted too:
    # tests/template/profiles.py (production-cluster: production with
    # RedisClusterMode=enabled; production-durable: that with
    # RedisDurability=sync, Valkey 9.0).
    for profile in production small production-cluster production-durable; do
        resolved="target/template/translated-$profile.json"
        echo "== cfn-lint $resolved (Profile=$profile)"
        "$PY" tests/template/profiles.py "$profile" "$TRANSLATED" "$resolved" >/dev/null &&
            "$VENV/bin/cfn-lint" "$resolved" || status=1
    done
fi

if command -v sam >/dev/null 2>&1; then
    echo "== sam validate --lint"
    SAM_CLI_TELEMETRY=0 sam validate --lint --template "$TEMPLATE" || status=1
else
    echo "== sam validate: skipped (SAM CLI not installed; optional)"
fi

if [[ $status -eq 0 ]]; then
    echo "check-template: OK"
else
    echo "check-template: FAILED" >&2
fi
exit "$status"
