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
