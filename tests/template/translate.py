"""Offline translation of template.yaml (AWS SAM) to plain CloudFormation.

`cfn-lint` on a SAM template does not look inside what the transform produces
(the IAM roles, the API's OpenAPI body, the CodeDeploy resources, the merged
Globals), so the checks translate the template first, the way `sam validate`
does, but without AWS credentials:

- local `CodeUri` paths become a dummy `s3://` URI (the translator accepts
  nothing else);
- the managed-policy lookup, which `sam validate` answers by calling IAM, is a
  fixed map of the few AWS managed policy names a template may mention by name;
- the region comes from `AWS_DEFAULT_REGION` (set to us-east-1 if unset).

Used by `scripts/check-template.sh` (as a program) and by the pytest fixtures
in `test_template.py` (as a module), so both check the very same translation.

    python tests/template/translate.py [TEMPLATE] [OUTPUT_JSON]
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

# The translator reads the region when it is imported and when it builds ARNs.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from cfnlint.decode import cfn_yaml  # noqa: E402
from samtranslator.parser.parser import Parser  # noqa: E402
from samtranslator.translator.translator import Translator  # noqa: E402

# Without a feature-toggle config every toggle is off, which is what an
# offline translation wants; the translator warns about each one it asks for.
logging.getLogger("samtranslator.feature_toggle").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
OUTPUT = ROOT / "target" / "template" / "translated.json"

DUMMY_CODE_URI = "s3://bucket/key"

# Policies named (not by ARN) in `Policies:` are resolved through this map.
# The template names none today; the map exists so the lookup never needs IAM.
MANAGED_POLICY_MAP = {
    name: f"arn:aws:iam::aws:policy/{path}"
    for name, path in {
        "AWSLambdaBasicExecutionRole": "service-role/AWSLambdaBasicExecutionRole",
        "AWSLambdaVPCAccessExecutionRole": "service-role/AWSLambdaVPCAccessExecutionRole",
        "AWSXrayWriteOnlyAccess": "AWSXrayWriteOnlyAccess",
    }.items()
}


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Loads a CloudFormation/SAM YAML file with its short-form tags (!Ref, !Sub,
    ...) turned into their long form, as plain dicts and lists."""
    node = cfn_yaml.load(str(path))
    # cfn-lint's nodes are dict/str subclasses carrying line marks; a JSON round
    # trip leaves plain Python values the translator and the tests can compare.
    return json.loads(json.dumps(node))


def _with_dummy_code_uris(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    function_globals = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in function_globals and not _is_s3(function_globals["CodeUri"]):
        function_globals["CodeUri"] = DUMMY_CODE_URI
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.setdefault("Properties", {})
        if props.get("PackageType", "Zip") != "Zip":
            continue
        if "CodeUri" in props and not _is_s3(props["CodeUri"]):
            props["CodeUri"] = DUMMY_CODE_URI
        if "CodeUri" not in props and "CodeUri" not in function_globals:
            props["CodeUri"] = DUMMY_CODE_URI
    return template


def _is_s3(uri: Any) -> bool:
    return isinstance(uri, dict) or (isinstance(uri, str) and uri.startswith("s3://"))


def translate(sam_template: dict[str, Any]) -> dict[str, Any]:
    """Returns the plain CloudFormation the SAM transform makes of `sam_template`.

    Raises samtranslator's InvalidDocumentException on an invalid template."""
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), plugins=[])
    translated = translator.translate(
        sam_template=_with_dummy_code_uris(sam_template),
        parameter_values={},
        get_managed_policy_map=lambda: MANAGED_POLICY_MAP,
    )
    # Same JSON round trip: the translator's output holds a few non-plain types.
    return json.loads(json.dumps(translated, default=str))


def translate_file(path: Path = TEMPLATE, output: Path | None = OUTPUT) -> dict[str, Any]:
    translated = translate(load_template(path))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n")
    return translated


def main(argv: list[str]) -> int:
    from samtranslator.model.exceptions import InvalidDocumentException

    path = Path(argv[1]) if len(argv) > 1 else TEMPLATE
    output = Path(argv[2]) if len(argv) > 2 else OUTPUT
    try:
        translate_file(path, output)
    except InvalidDocumentException as err:
        print(f"{path}: SAM translation failed:", file=sys.stderr)
        for cause in err.causes:
            print(f"  - {cause.message}", file=sys.stderr)
        return 1
    print(f"translated {path} -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
