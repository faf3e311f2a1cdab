"""The template as CloudFormation would deploy it for one `Profile`.

template.yaml is one template with a `Profile` parameter (production | small)
and Conditions on it. The checks must hold for each profile, so this module
does what CloudFormation does with the parameter values it is given: it
evaluates the Conditions it can (those whose parameters have a value, given or
default), drops the resources and outputs whose condition is false, picks the
branch of each `Fn::If` on a known condition and removes `AWS::NoValue`.
Conditions on parameters without a value (`Env`, `AlarmTopicArn` when it is not
given...) stay as they are, so what depends on them is still checked as written.

It runs on the *translation* (translate.translate), so what is checked is what
the SAM transform made of the template, as in a deploy: SAM sees the
unresolved `Fn::If`s exactly as it does in AWS.

Used by test_template.py (fixtures), scripts/check-template.sh (one
translation per profile, each linted) and tools/cost (the resources each
profile deploys).

    python tests/template/profiles.py PROFILE|VARIANT INPUT_JSON OUTPUT_JSON
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

PROFILES = ("production", "small")
# Deployments the checks also resolve and lint: a profile with more
# parameters given (scripts/check-template.sh lints each one).
VARIANTS: dict[str, dict[str, str]] = {
    "production-cluster": {"Profile": "production", "RedisClusterMode": "enabled"},
    "production-durable": {"Profile": "production", "RedisClusterMode": "enabled", "RedisDurability": "sync"},
}

_UNKNOWN = object()
_NO_VALUE = {"Ref": "AWS::NoValue"}


def resolve(
    template: dict[str, Any],
    values: dict[str, Any],
    prune_parameters: bool = False,
    use_defaults: bool = False,
) -> dict[str, Any]:
    """`template` with `values` (parameter name -> value) applied as far as
    Conditions go; with `use_defaults`, every other parameter takes its Default
    (what a deploy that gives only `values` gets). With `prune_parameters`,
    parameters nothing references any more are dropped (cfn-lint warns about
    unused parameters; a deploy ignores values given for them anyway)."""
    t = copy.deepcopy(template)
    params = t.get("Parameters", {})
    conditions = t.get("Conditions", {})

    def param(name: str) -> Any:
        if name not in params:
            return _UNKNOWN
        if name in values:
            return values[name]
        return params[name].get("Default", _UNKNOWN) if use_defaults else _UNKNOWN

    def scalar(x: Any) -> Any:
        if isinstance(x, (str, int, float, bool)):
            return str(x).lower() if isinstance(x, bool) else str(x)
        if isinstance(x, dict) and set(x) == {"Ref"}:
            v = param(x["Ref"])
            return v if v is _UNKNOWN else str(v)
        return _UNKNOWN

    known: dict[str, bool | None] = {}

    def condition(name: str) -> bool | None:
        if name not in known:
            known[name] = None  # guards against a cycle
            known[name] = evaluate(conditions[name])
        return known[name]

    def evaluate(expr: Any) -> bool | None:
        if not isinstance(expr, dict) or len(expr) != 1:
            return None
        (fn, args), = expr.items()
        if fn == "Condition":
            return condition(args)
        if fn == "Fn::Equals":
            a, b = (scalar(x) for x in args)
            return None if _UNKNOWN in (a, b) else a == b
        if fn == "Fn::Not":
            v = evaluate(args[0])
            return None if v is None else not v
        if fn in ("Fn::And", "Fn::Or"):
            vs = [evaluate(a) for a in args]
            decisive = fn == "Fn::Or"  # True decides an Or, False an And
            if decisive in vs:
                return decisive
            return None if None in vs else not decisive
        return None

    for name in conditions:
        condition(name)

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if set(x) == {"Fn::If"}:
                name, yes, no = x["Fn::If"]
                v = known.get(name)
                if v is True:
                    return walk(yes)
                if v is False:
                    return walk(no)
                return {"Fn::If": [name, walk(yes), walk(no)]}
            if len(x) == 1 and next(iter(x)) in ("Fn::And", "Fn::Or"):
                # An unresolved And/Or loses its decided terms (a decisive
                # one would have decided it): And(x, true) is x.
                (fn, args), = x.items()
                rest = [walk(a) for a in args if evaluate(a) is None]
                return rest[0] if len(rest) == 1 else {fn: rest}
            out = {}
            for k, v in x.items():
                v = walk(v)
                if v != _NO_VALUE:
                    out[k] = v
            return out
        if isinstance(x, list):
            return [w for w in (walk(v) for v in x) if w != _NO_VALUE]
        return x

    for section in ("Resources", "Outputs"):
        kept = {}
        for logical_id, body in t.get(section, {}).items():
            c = body.get("Condition")
            if c is not None and known.get(c) is False:
                continue
            if c is not None and known.get(c) is True:
                body = {k: v for k, v in body.items() if k != "Condition"}
            kept[logical_id] = body
        t[section] = kept
    unresolved = {k: v for k, v in conditions.items() if known[k] is None}
    for section in ("Resources", "Outputs", "Rules"):
        if section in t:
            t[section] = walk(t[section])
    if unresolved:
        t["Conditions"] = walk(unresolved)
    else:
        t.pop("Conditions", None)
    # Rules about another profile no longer apply.
    rules = {}
    for name, rule in t.get("Rules", {}).items():
        if "RuleCondition" in rule and evaluate(rule["RuleCondition"]) is False:
            continue
        rules[name] = rule
    if "Rules" in t:
        t["Rules"] = rules
        if not rules:
            del t["Rules"]
    # Conditions nothing uses any more (their only users were dropped).
    if "Conditions" in t:
        text = json.dumps({k: v for k, v in t.items() if k != "Conditions"})
        used = {n for n in t["Conditions"] if f'"{n}"' in text}
        used |= {n for n in t["Conditions"] if any(f'"Condition": "{n}"' in json.dumps(c) for c in t["Conditions"].values())}
        t["Conditions"] = {k: v for k, v in t["Conditions"].items() if k in used}
        if not t["Conditions"]:
            del t["Conditions"]
    if prune_parameters:
        text = json.dumps({k: v for k, v in t.items() if k != "Parameters"})
        t["Parameters"] = {
            k: v for k, v in params.items() if f'"{k}"' in text or f"${{{k}}}" in text or k in values
        }
    return t


def for_profile(
    translated: dict[str, Any], profile: str, prune_parameters: bool = False, use_defaults: bool = False
) -> dict[str, Any]:
    """Only the profile's conditions are decided unless `use_defaults`
    (a variant's too: its parameters are given)."""
    if profile in VARIANTS:
        out = resolve(translated, VARIANTS[profile], prune_parameters, use_defaults)
        if prune_parameters:
            # A variant's own parameters, once decided, are unused like any other.
            text = json.dumps({k: v for k, v in out.items() if k != "Parameters"})
            for k in set(VARIANTS[profile]) - {"Profile"}:
                if f'"{k}"' not in text and f"${{{k}}}" not in text:
                    out["Parameters"].pop(k, None)
        return out
    assert profile in PROFILES, profile
    return resolve(translated, {"Profile": profile}, prune_parameters, use_defaults)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    profile, src, dst = argv[1], Path(argv[2]), Path(argv[3])
    out = for_profile(json.loads(src.read_text()), profile, prune_parameters=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"resolved {src} for Profile={profile} -> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
