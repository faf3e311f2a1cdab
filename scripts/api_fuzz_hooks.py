"""Schemathesis hooks for scripts/api-fuzz.sh: send only what the emulator passes on.

`cargo lambda watch`, the local stand-in for the Lambda URL, answers 500 by
itself (`text/plain`, before the producer runs) to a request whose header
value or body holds bytes that are not UTF-8. Schemathesis's coverage phase
sends such values even with `--generation-codec ascii`. In AWS that request
meets API Gateway, not this emulator, and locally it never reaches the
function, so its answer says nothing about the product: such cases are not
sent, and every check judges the function's own answers. The script also
reads the function's log for panics and 5xx answers.
"""

import datetime

import schemathesis


def _not_utf8(value) -> bool:
    """True for a value whose bytes on the wire are not UTF-8."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str):
        try:
            # The HTTP client sends str header values as Latin-1 bytes.
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            return False
    else:
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@schemathesis.hook
def filter_case(context, case):
    """Keep a case only if the emulator can hand it to the function."""
    headers = case.headers or {}
    if any(_not_utf8(v) for v in headers.values()):
        return False
    body = getattr(case, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return not _not_utf8(body)
    return True


# `sendAt` may be at most 30 days ahead (CONTRACT.md); openapi.yaml cannot say
# "relative to now", so a schema-valid date-time years ahead is answered 400,
# which Schemathesis's positive_data_acceptance check reads as a valid request
# refused. Such a value is moved into the past (the contract: "a time in the
# past means now"), so the rest of the body is still judged; the 30-day rule
# itself is tested in functions/producer/src/tests/cancel.rs and the stack tests.
_SEND_AT_LIMIT = datetime.timedelta(days=30)


def _too_far_ahead(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        at = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    if at.tzinfo is None:
        return False
    return at - datetime.datetime.now(datetime.timezone.utc) > _SEND_AT_LIMIT


@schemathesis.hook
def map_case(context, case):
    """A `sendAt` past the 30-day window becomes one in the past."""
    body = getattr(case, "body", None)
    if isinstance(body, dict) and _too_far_ahead(body.get("sendAt")):
        body["sendAt"] = "2020-01-01T00:00:00Z"
    return case
