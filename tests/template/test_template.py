"""Offline checks of template.yaml: what must hold for the system to be safe to
deploy, asserted on the SAM template as written (`raw`) and on the plain
CloudFormation the SAM transform makes of it (`cfn`, see translate.py).

Run: .venv/bin/python -m pytest tests/template
Point SAM_TEMPLATE at another file to check that instead (how each assertion
was seen to fail: a deliberately broken copy in a scratch directory).

Every test runs once per `Profile` (production, small): `raw` and `cfn` are
the template and its translation with that profile's conditions decided
(profiles.py), as CloudFormation deploys them.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

# translate.py sits beside this file; make it importable whatever pytest's
# import mode or working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import profiles  # noqa: E402
import translate  # noqa: E402

TEMPLATE = Path(os.environ.get("SAM_TEMPLATE", translate.TEMPLATE))

PRODUCER = "ProducerFunction"
CONSUMER = "ConsumerFunction"
FUNCTIONS = {PRODUCER: "producer", CONSUMER: "consumer"}
MAIN_QUEUE = "OutboundQueue"
DLQ = "OutboundDLQ"

# The names the functions read (CONTRACT.md plus the AWS-only ones).
ENV_VARS = {
    "REDIS_URL",
    "REDIS_CLUSTER",
    "QUEUE_URL",
    "DLQ_URL",
    "RATE_LIMIT_PER_MINUTE",
    "RATE_LIMIT_BURST",
    "RATE_LIMITER_ENABLED",
    "RATE_LIMITER_ROLLOUT_PERCENT",
    "ONLYFANS_API_URL",
    "MAX_ATTEMPTS",
    "MAX_RECEIVE_COUNT",
    "LIMITER_CLOCK",
    "STATUS_TTL_SECONDS",
    "BATCHING_WINDOW_SECONDS",
    "METRICS_NAMESPACE",
}
# Where each profile keeps the two secrets.
SECRET_ENV_VARS = {
    "production": {"REDIS_AUTH_SECRET_ARN", "ONLYFANS_API_TOKEN_SECRET_ARN"},
    "small": {"REDIS_AUTH_PARAMETER", "ONLYFANS_API_TOKEN_PARAMETER"},
}

# Lambda's application log levels, least severe first (what
# LoggingConfig.ApplicationLogLevel accepts and AWS_LAMBDA_LOG_LEVEL carries).
LAMBDA_LOG_LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]

ROUTES = {
    ("/v1/messages", "post"),
    ("/v1/messages/{id}", "get"),
    ("/v1/messages/{id}", "delete"),
    ("/v1/campaigns", "post"),
    ("/v1/campaigns/{id}", "get"),
    ("/v1/campaigns/{id}", "delete"),
    ("/v1/campaigns/{id}/recipients", "post"),
    ("/v1/campaigns/{id}/messages", "get"),
    ("/v1/status", "get"),
    ("/v1/limits", "get"),
    ("/v1/admin/accounts/{accountId}/limits", "get"),
    ("/v1/admin/accounts/{accountId}/limits", "put"),
    ("/v1/admin/accounts/{accountId}/limits", "delete"),
    ("/health", "get"),
}
PUBLIC_ROUTES = {("/health", "get")}
# Routes the authorizer opens only to a token with the admin scope.
ADMIN_SCOPE = "messages:admin"
ADMIN_ROUTES = {(p, m) for (p, m) in ROUTES if p.startswith("/v1/admin/")}

# AWS managed policies the SAM transform attaches by itself, each with the
# property that makes it do so. They are the only place a "*" may appear:
# their actions support no narrower resource. Nothing we write may add one.
SAM_MANAGED_POLICIES = {
    # logs:CreateLogGroup/CreateLogStream/PutLogEvents; every SAM function role.
    "service-role/AWSLambdaBasicExecutionRole": "function",
    # ec2:CreateNetworkInterface, DescribeNetworkInterfaces, DeleteNetworkInterface,
    # Assign/UnassignPrivateIpAddresses on "*": ENIs are created before they have
    # an ARN and EC2 Describe* has no resource-level permissions. From VpcConfig.
    "service-role/AWSLambdaVPCAccessExecutionRole": "vpc",
    # xray:PutTraceSegments/PutTelemetryRecords on "*": X-Ray has no resource-level
    # permissions. From Tracing (Active, or the Tracing parameter).
    "AWSXrayWriteOnlyAccess": "tracing",
    # The CodeDeploy service role SAM creates for DeploymentPreference.
    "service-role/AWSCodeDeployRoleForLambda": "codedeploy",
}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return translate.load_template(TEMPLATE)


@pytest.fixture(scope="session")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    return translate.translate(template)


@pytest.fixture(scope="session", params=profiles.PROFILES)
def profile(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def raw(template: dict[str, Any], profile: str) -> dict[str, Any]:
    return profiles.for_profile(template, profile)


@pytest.fixture(scope="session")
def cfn(translated: dict[str, Any], profile: str) -> dict[str, Any]:
    return profiles.for_profile(translated, profile)


# ------------------------------------------------------------------- helpers


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == type_}


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id].get("Properties", {})


def ref_target(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` points at, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else att.split(".")[0]
    return None


def number(template: dict[str, Any], value: Any, bound: str = "Default") -> float:
    """A literal number, or a parameter's Default / MinValue / MaxValue."""
    name = ref_target(value)
    if name is not None:
        param = template["Parameters"][name]
        assert bound in param, f"parameter {name} has no {bound}"
        return float(param[bound])
    return float(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def strings_in(value: Any) -> Iterator[str]:
    """Every literal string inside an IAM Action/Resource value, intrinsics included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)


def statements_in_policy_document(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    return [s for s in as_list(doc.get("Statement", [])) if isinstance(s, dict)]


def cfn_policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every identity-policy statement of a CloudFormation template: inline
    role policies and standalone IAM policies (resource policies are not
    identity policies; they are checked by the same walker where they exist)."""
    for logical_id, res in template["Resources"].items():
        p = res.get("Properties", {})
        type_ = res.get("Type")
        if type_ == "AWS::IAM::Role":
            for pol in p.get("Policies", []) or []:
                for s in statements_in_policy_document(pol.get("PolicyDocument")):
                    yield logical_id, s
        elif type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            for s in statements_in_policy_document(p.get("PolicyDocument")):
                yield logical_id, s
        elif type_ in ("AWS::SQS::QueuePolicy", "AWS::SecretsManager::ResourcePolicy"):
            doc = p.get("PolicyDocument") or p.get("ResourcePolicy")
            for s in statements_in_policy_document(doc):
                yield logical_id, s


def raw_policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The statements we wrote in the SAM template (functions' `Policies`
    plus any IAM resources declared directly)."""
    for logical_id, res in resources(template, "AWS::Serverless::Function").items():
        for pol in as_list(res.get("Properties", {}).get("Policies", [])):
            if isinstance(pol, dict) and "Statement" in pol:
                for s in statements_in_policy_document(pol):
                    yield logical_id, s
    yield from cfn_policy_statements(template)


def role_of(cfn: dict[str, Any], function: str) -> str:
    role = ref_target(props(cfn, function)["Role"])
    assert role in cfn["Resources"], f"{function}'s role {role} is not in the template"
    return role


def role_statements(cfn: dict[str, Any], role: str) -> list[dict[str, Any]]:
    out = []
    for pol in props(cfn, role).get("Policies", []) or []:
        out.extend(statements_in_policy_document(pol.get("PolicyDocument")))
    for _, res in resources(cfn, "AWS::IAM::Policy").items():
        if any(ref_target(r) == role for r in res["Properties"].get("Roles", [])):
            out.extend(statements_in_policy_document(res["Properties"].get("PolicyDocument")))
    return out


def grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """{action: {logical ids of the resources it is allowed on}}"""
    out: dict[str, set[str]] = {}
    for s in statements:
        if s.get("Effect") != "Allow":
            continue
        targets = {ref_target(r) or str(r) for r in as_list(s.get("Resource", []))}
        for action in as_list(s.get("Action", [])):
            out.setdefault(action, set()).update(targets)
    return out


def alias_of(cfn: dict[str, Any], function: str) -> str:
    aliases = [
        k
        for k, v in resources(cfn, "AWS::Lambda::Alias").items()
        if ref_target(v["Properties"]["FunctionName"]) == function
    ]
    assert len(aliases) == 1, f"{function} should have exactly one alias, has {aliases}"
    return aliases[0]


def metric_stats(alarm_props: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each metric an alarm reads, as {Namespace, MetricName, Dimensions}."""
    if "MetricName" in alarm_props:
        yield alarm_props
    for m in alarm_props.get("Metrics", []) or []:
        if "MetricStat" in m:
            yield m["MetricStat"]["Metric"]


def dimension_targets(metric: dict[str, Any], name: str) -> set[str | None]:
    out = set()
    for d in metric.get("Dimensions", []) or []:
        if d["Name"] == name:
            out.add(ref_target(d["Value"]) or _sub_target(d["Value"]))
    return out


def _sub_target(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        m = re.match(r"^\$\{([A-Za-z0-9]+)\}", value["Fn::Sub"])
        return m.group(1) if m else None
    return None


# ----------------------------------------------------------------- functions


@pytest.mark.parametrize("function,binary", FUNCTIONS.items())
def test_functions_are_rust_on_al2023_arm64(raw, cfn, function, binary):
    metadata = raw["Resources"][function].get("Metadata", {})
    assert metadata.get("BuildMethod") == "rust-cargolambda"
    assert metadata.get("BuildProperties", {}).get("Binary") == binary, (
        "in a workspace, Metadata.BuildProperties.Binary selects the binary cargo-lambda builds"
    )
    p = props(cfn, function)
    assert p.get("Runtime") == "provided.al2023"
    assert p.get("Architectures") == ["arm64"]
    assert p.get("Handler") == "bootstrap"
    assert ref_target(p.get("TracingConfig", {}).get("Mode")) == "Tracing"
    assert p.get("LoggingConfig", {}).get("LogFormat") == "JSON"


def test_tracing_is_a_choice_and_off_by_default(raw):
    # X-Ray on every invocation is most of the production bill per message
    # at low volume (make cost): the operator turns it on, knowing its price.
    param = raw["Parameters"].get("Tracing")
    assert param, "the Tracing parameter is gone"
    assert set(param.get("AllowedValues", [])) == {"Active", "PassThrough"}
    assert param.get("Default") == "PassThrough"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_get_every_configuration_variable(cfn, profile, function):
    variables = props(cfn, function).get("Environment", {}).get("Variables", {})
    missing = (ENV_VARS | SECRET_ENV_VARS[profile]) - set(variables)
    assert not missing, f"{function} lacks {sorted(missing)}"
    other = set().union(*SECRET_ENV_VARS.values()) - SECRET_ENV_VARS[profile]
    assert not (other & set(variables)), f"{function} has the other profile's {sorted(other & set(variables))}"
    # In AWS the HTTP API's JWT authorizer verifies tokens; a shared HS256
    # secret would be a second, weaker way in.
    assert "AUTH_JWT_SECRET" not in variables
    assert variables.get("AUTH_REQUIRE_AUTHORIZER") == "true", "claims must only come from the authorizer"
    redis_url = variables["REDIS_URL"]
    if profile == "small":
        # The external Redis: a parameter that only takes rediss:// URLs.
        assert ref_target(redis_url) == "RedisUrl"
        assert cfn["Parameters"]["RedisUrl"]["AllowedPattern"].startswith("^(rediss://"), (
            "Redis must be reached over TLS"
        )
        assert variables.get("LIMITER_CLOCK") == "client", "a serverless Redis may refuse TIME in scripts"
        return
    # One URL per cluster mode (test_cluster_mode_is_a_parameter_...): both TLS.
    cond, yes, no = _branches(redis_url)
    assert cond in (None, "ClusterMode"), cond
    for branch in (yes, no):
        sub = branch.get("Fn::Sub") if isinstance(branch, dict) else branch
        assert isinstance(sub, str) and sub.startswith("rediss://"), "Redis must be reached over TLS"
        assert "RedisReplicationGroup." in sub


def test_application_log_level_is_a_parameter_of_lambdas_levels_default_info(raw):
    param = raw["Parameters"].get("ApplicationLogLevel")
    assert param is not None, "operators choose the log level without editing the template"
    assert param.get("Type") == "String"
    assert param.get("AllowedValues") == LAMBDA_LOG_LEVELS
    assert param.get("Default") == "INFO"


def test_platform_log_lines_are_a_choice_and_off_by_default(raw):
    # platform.start/report: ~600 bytes of ingested logs per invocation that
    # Lambda's own metrics make redundant (make cost prices them).
    param = raw["Parameters"].get("SystemLogLevel")
    assert param is not None
    assert param.get("AllowedValues") == ["DEBUG", "INFO", "WARN"]
    assert param.get("Default") == "WARN"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_filter_json_logs_at_the_application_log_level(cfn, function):
    logging_config = props(cfn, function).get("LoggingConfig", {})
    # Log-level filtering needs the JSON log format; the functions write
    # JSON lines with `level` and an RFC 3339 `timestamp` for it.
    assert logging_config.get("LogFormat") == "JSON"
    assert ref_target(logging_config.get("ApplicationLogLevel")) == "ApplicationLogLevel"
    assert ref_target(logging_config.get("SystemLogLevel")) == "SystemLogLevel"
    variables = props(cfn, function).get("Environment", {}).get("Variables", {})
    # RUST_LOG would only look like it sets the level: AWS_LAMBDA_LOG_LEVEL
    # (from ApplicationLogLevel) comes first.
    assert "RUST_LOG" not in variables


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_log_to_their_own_log_group_with_retention(cfn, function):
    group = ref_target(props(cfn, function).get("LoggingConfig", {}).get("LogGroup"))
    assert group in resources(cfn, "AWS::Logs::LogGroup"), f"{function} has no explicit log group"
    assert props(cfn, group).get("RetentionInDays") == 30


def test_max_receive_count_env_is_the_redrive_value(cfn):
    redrive = props(cfn, MAIN_QUEUE)["RedrivePolicy"]["maxReceiveCount"]
    env = props(cfn, CONSUMER)["Environment"]["Variables"]["MAX_RECEIVE_COUNT"]
    assert env == redrive, "the consumer must re-enqueue before the redrive limit it is told about"


# ---------------------------------------------------------------- messaging


def consumer_mapping(cfn: dict[str, Any]) -> dict[str, Any]:
    targets = {CONSUMER, alias_of(cfn, CONSUMER)}
    found = [
        v["Properties"]
        for v in resources(cfn, "AWS::Lambda::EventSourceMapping").values()
        if ref_target(v["Properties"].get("FunctionName")) in targets
    ]
    assert len(found) == 1, f"expected one event source mapping for the consumer, found {len(found)}"
    return found[0]


def test_batching_window_env_is_the_mappings(cfn):
    esm = consumer_mapping(cfn)
    env = props(cfn, CONSUMER)["Environment"]["Variables"]["BATCHING_WINDOW_SECONDS"]
    assert env == esm["MaximumBatchingWindowInSeconds"], (
        "the consumer defers through the queue only when a token waits longer than the window"
    )


def test_consumer_mapping_reports_batch_item_failures(cfn):
    esm = consumer_mapping(cfn)
    assert ref_target(esm["EventSourceArn"]) == MAIN_QUEUE
    assert "ReportBatchItemFailures" in esm.get("FunctionResponseTypes", [])
    assert number(cfn, esm.get("BatchSize", 10)) == 10


def test_consumer_mapping_caps_concurrency(cfn):
    esm = consumer_mapping(cfn)
    max_concurrency = esm.get("ScalingConfig", {}).get("MaximumConcurrency")
    assert max_concurrency is not None, "ScalingConfig.MaximumConcurrency must be set"
    # 2 is the smallest value SQS event sources accept.
    assert number(cfn, max_concurrency, "Default") >= 2
    if ref_target(max_concurrency):
        assert number(cfn, max_concurrency, "MinValue") >= 2
    window = esm.get("MaximumBatchingWindowInSeconds")
    assert window is not None and ref_target(window) == "BatchingWindowSeconds"


def test_consumer_mapping_uses_the_live_alias(cfn):
    # Otherwise CodeDeploy's canary would never see SQS traffic.
    assert ref_target(consumer_mapping(cfn)["FunctionName"]) == alias_of(cfn, CONSUMER)


def test_main_queue_redrives_to_the_dlq(cfn):
    redrive = props(cfn, MAIN_QUEUE).get("RedrivePolicy")
    assert redrive, "the main queue needs a redrive policy"
    dlq = ref_target(redrive["deadLetterTargetArn"])
    assert dlq == DLQ and dlq in resources(cfn, "AWS::SQS::Queue")
    assert "RedrivePolicy" not in props(cfn, DLQ)


def test_max_receive_count_leaves_room_for_deferrals(cfn):
    # Every deferral of a throttled message is a receive; a low limit would
    # send messages that merely waited for the limiter to the DLQ.
    count = props(cfn, MAIN_QUEUE)["RedrivePolicy"]["maxReceiveCount"]
    assert number(cfn, count, "Default") >= 50
    if ref_target(count):
        assert number(cfn, count, "MinValue") >= 50


def test_visibility_timeout_covers_six_consumer_timeouts(cfn):
    visibility = number(cfn, props(cfn, MAIN_QUEUE).get("VisibilityTimeout", 30))
    timeout = number(cfn, props(cfn, CONSUMER).get("Timeout", 3))
    window = consumer_mapping(cfn).get("MaximumBatchingWindowInSeconds", 0)
    largest_window = number(cfn, window, "MaxValue") if ref_target(window) else number(cfn, window)
    assert visibility >= 6 * timeout + largest_window, (
        f"VisibilityTimeout {visibility} < 6 x {timeout} + batching window {largest_window}"
    )


def test_queues_keep_messages_fourteen_days(cfn):
    for queue in (MAIN_QUEUE, DLQ):
        assert number(cfn, props(cfn, queue).get("MessageRetentionPeriod", 345600)) == 1209600


def test_queues_are_encrypted(cfn):
    queues = resources(cfn, "AWS::SQS::Queue")
    assert {MAIN_QUEUE, DLQ} <= set(queues)
    for name, q in queues.items():
        p = q.get("Properties", {})
        assert p.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in p, f"{name} is not encrypted"


# --------------------------------------------------------------------- Redis


def test_small_profile_has_no_vpc_nor_elasticache(cfn, profile):
    if profile != "small":
        pytest.skip("production runs in the VPC")
    for f in FUNCTIONS:
        assert "VpcConfig" not in props(cfn, f), f"{f} is in a VPC (a NAT gateway to reach anything)"
    for type_ in ("AWS::ElastiCache::ReplicationGroup", "AWS::EC2::SecurityGroup", "AWS::SecretsManager::Secret"):
        assert not resources(cfn, type_), f"the small profile has {type_}"


def test_redis_is_encrypted_and_authenticated(cfn, profile):
    if profile == "small":
        pytest.skip("external Redis: TLS is the RedisUrl pattern, AUTH the SSM parameter")
    groups = resources(cfn, "AWS::ElastiCache::ReplicationGroup")
    assert groups, "no ElastiCache replication group"
    assert not resources(cfn, "AWS::ElastiCache::ServerlessCache"), (
        "ElastiCache Serverless refuses TIME in scripts; use a node-based group (or LIMITER_CLOCK=client)"
    )
    for name, g in groups.items():
        p = g["Properties"]
        assert p.get("TransitEncryptionEnabled") is True, f"{name}: TransitEncryptionEnabled"
        assert p.get("AtRestEncryptionEnabled") is True, f"{name}: AtRestEncryptionEnabled"
        token = p.get("AuthToken")
        text = token.get("Fn::Sub") if isinstance(token, dict) else token
        assert isinstance(text, str) and text.startswith("{{resolve:secretsmanager:"), (
            f"{name}: AuthToken must come from Secrets Manager"
        )


def _branches(value: Any) -> tuple[Any, Any, Any]:
    """(condition, if-true, if-false) of an `Fn::If`, or (None, v, v)."""
    if isinstance(value, dict) and "Fn::If" in value:
        cond, yes, no = value["Fn::If"]
        return cond, yes, no
    return None, value, value


def _deployed(translated: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The translation as a deploy with these parameter values (the rest at
    their defaults) resolves it; `Ref`s to parameters are left as they are."""
    return profiles.resolve(translated, values, use_defaults=True)


def _value(t: dict[str, Any], v: Any, values: dict[str, str]) -> str:
    name = ref_target(v)
    if name is not None and name in t["Parameters"]:
        return str(values.get(name, t["Parameters"][name].get("Default")))
    return str(v)


DEPLOYMENTS = [
    {"Profile": "production", "Env": env, "RedisClusterMode": mode}
    for env in ("production", "staging")
    for mode in ("disabled", "enabled")
] + [
    {"Profile": "production", "Env": "production", "RedisClusterMode": "enabled", "RedisReplicasPerShard": "2"},
    {"Profile": "production", "Env": "production", "RedisClusterMode": "enabled", "RedisDurability": "sync"},
    {"Profile": "production", "Env": "production", "RedisClusterMode": "enabled", "RedisDurability": "async"},
    {"Profile": "production", "Env": "staging", "RedisClusterMode": "enabled", "RedisDurability": "sync"},
]


@pytest.mark.parametrize("values", DEPLOYMENTS, ids=lambda v: "-".join(v.values()))
@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_replica_confirms_what_a_failover_must_not_lose(translated, values, function):
    """REDIS_WAIT_REPLICAS is each shard's replica count in production, 0
    elsewhere: fewer leaves writes a failover can lose, more blocks every
    send (WAIT can never be satisfied). Without cluster mode the group's
    replicas are NumCacheClusters - 1, with it ReplicasPerNodeGroup. With
    RedisDurability=sync ElastiCache answers a write only once its Multi-AZ
    log holds it, so there is nothing to wait for (0); async still waits."""
    t = _deployed(translated, values)
    variables = props(t, function)["Environment"]["Variables"]
    group = next(iter(resources(t, "AWS::ElastiCache::ReplicationGroup").values()))["Properties"]
    if "NumNodeGroups" in group:
        replicas = int(_value(t, group["ReplicasPerNodeGroup"], values))
    else:
        replicas = int(_value(t, group["NumCacheClusters"], values)) - 1
    wait = int(_value(t, variables["REDIS_WAIT_REPLICAS"], values))
    if values.get("RedisDurability") == "sync":
        assert wait == 0, wait
    else:
        assert wait == (replicas if values["Env"] == "production" else 0), (wait, replicas)
    assert 1 <= int(variables["REDIS_WAIT_TIMEOUT_MS"]) <= 1000


@pytest.mark.parametrize("values", DEPLOYMENTS, ids=lambda v: "-".join(v.values()))
def test_cluster_mode_is_a_parameter_and_the_functions_follow_it(translated, values):
    """RedisClusterMode=enabled deploys ElastiCache's cluster mode (node
    groups of a primary and its replicas, automatic failover, the
    cluster-enabled parameter group) and hands the functions its
    configuration endpoint with REDIS_CLUSTER=true; disabled, one primary
    endpoint and REDIS_CLUSTER=false."""
    t = _deployed(translated, values)
    group = next(iter(resources(t, "AWS::ElastiCache::ReplicationGroup").values()))["Properties"]
    cluster = values["RedisClusterMode"] == "enabled"
    for f in FUNCTIONS:
        env = props(t, f)["Environment"]["Variables"]
        assert env["REDIS_CLUSTER"] == ("true" if cluster else "false"), f
        url = env["REDIS_URL"]["Fn::Sub"]
        assert url.startswith("rediss://"), f
        endpoint = "ConfigurationEndPoint" if cluster else "PrimaryEndPoint"
        assert f"RedisReplicationGroup.{endpoint}.Address" in url, (f, url)
        assert f"RedisReplicationGroup.{endpoint}.Port" in url, (f, url)
    if cluster:
        assert "NumCacheClusters" not in group
        assert ref_target(group["NumNodeGroups"]) == "RedisShards"
        assert ref_target(group["ReplicasPerNodeGroup"]) == "RedisReplicasPerShard"
        assert number(t, group["ReplicasPerNodeGroup"], "MinValue") >= 1, "cluster mode needs a replica per shard"
        assert number(t, group["NumNodeGroups"]) == 3
        assert group["CacheParameterGroupName"].endswith(".cluster.on")
        assert group["AutomaticFailoverEnabled"] is True
    else:
        assert not {"NumNodeGroups", "ReplicasPerNodeGroup", "CacheParameterGroupName"} & set(group)
        assert int(group["NumCacheClusters"]) == (2 if values["Env"] == "production" else 1)
    assert group["MultiAZEnabled"] is (values["Env"] == "production")
    # The engine's cluster parameter group matches its version.
    if cluster:
        major = str(group["EngineVersion"]).split(".")[0]
        assert group["CacheParameterGroupName"] == f"default.{group['Engine']}{major}.cluster.on"


@pytest.mark.parametrize("values", DEPLOYMENTS, ids=lambda v: "-".join(v.values()))
def test_elasticache_durability_is_a_parameter_on_valkey_9_in_cluster_mode(translated, values):
    """RedisDurability=sync|async sets the replication group's Durability and
    the engine version it needs (Valkey 9.0, its cluster parameter group);
    disabled (the default) leaves Valkey 8.0 with no Durability property."""
    t = _deployed(translated, values)
    group = next(iter(resources(t, "AWS::ElastiCache::ReplicationGroup").values()))["Properties"]
    durability = values.get("RedisDurability", "disabled")
    if durability == "disabled":
        assert "Durability" not in group
        assert group["EngineVersion"] == "8.0"
    else:
        assert _value(t, group["Durability"], values) == durability
        assert group["EngineVersion"] == "9.0"
        assert group["CacheParameterGroupName"] == "default.valkey9.cluster.on"
        assert group["TransitEncryptionEnabled"] is True and group["AtRestEncryptionEnabled"] is True


def test_durability_is_refused_without_cluster_mode(raw):
    """The rule that keeps RedisDurability to cluster mode in production
    (ElastiCache refuses durability otherwise, at create time)."""
    rule = raw["Rules"]["DurabilityNeedsClusterMode"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RedisDurability"}, "disabled"]}]}
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert {"Fn::Equals": [{"Ref": "RedisClusterMode"}, "enabled"]} in asserted
    assert {"Fn::Equals": [{"Ref": "Profile"}, "production"]} in asserted
    assert raw["Parameters"]["RedisDurability"]["Default"] == "disabled"


def test_the_small_profile_has_no_cluster_switch_on(cfn, profile):
    if profile != "small":
        pytest.skip("the small profile's external Redis")
    for f in FUNCTIONS:
        assert props(cfn, f)["Environment"]["Variables"]["REDIS_CLUSTER"] == "false"


def test_redis_port_is_open_only_to_the_functions(cfn, profile):
    if profile == "small":
        pytest.skip("no VPC, no security groups in the small profile")
    group = next(iter(resources(cfn, "AWS::ElastiCache::ReplicationGroup").values()))["Properties"]
    redis_sgs = {ref_target(sg) for sg in group["SecurityGroupIds"]}
    function_sgs = {
        ref_target(sg)
        for f in FUNCTIONS
        for sg in props(cfn, f).get("VpcConfig", {}).get("SecurityGroupIds", [])
    }
    assert function_sgs and not (function_sgs & redis_sgs)
    ingress = []
    for sg in redis_sgs:
        ingress += props(cfn, sg).get("SecurityGroupIngress", [])
    for rule in resources(cfn, "AWS::EC2::SecurityGroupIngress").values():
        if ref_target(rule["Properties"].get("GroupId")) in redis_sgs:
            ingress.append(rule["Properties"])
    assert ingress, "Redis security group has no ingress rule"
    for rule in ingress:
        assert "CidrIp" not in rule and "CidrIpv6" not in rule, "Redis must not be open to an address range"
        assert ref_target(rule.get("SourceSecurityGroupId")) in function_sgs
        assert (rule.get("FromPort"), rule.get("ToPort")) == (6379, 6379)


# ----------------------------------------------------------------------- IAM


def _star_free(where: str, statement: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        for text in strings_in(statement.get(key, [])):
            if "*" in text:
                problems.append(f"{where} {statement.get('Sid', '')} {key}: {text}")
    return problems


def test_no_wildcards_in_statements_we_wrote(raw):
    statements = list(raw_policy_statements(raw))
    assert statements, "found no IAM statements in the template"
    problems = [p for where, s in statements for p in _star_free(where, s)]
    assert not problems, "wildcards in IAM statements:\n" + "\n".join(problems)


def test_no_wildcards_in_any_inline_statement_after_translation(cfn):
    # Catches SAM policy templates (e.g. a *Policy: {} entry) that expand to "*".
    problems = [p for where, s in cfn_policy_statements(cfn) for p in _star_free(where, s)]
    assert not problems, "wildcards in IAM statements:\n" + "\n".join(problems)


def test_only_sam_added_managed_policies_and_each_for_its_reason(raw, cfn, profile):
    # We name no managed policy ourselves...
    for name, res in resources(raw, "AWS::Serverless::Function").items():
        for pol in as_list(res.get("Properties", {}).get("Policies", [])):
            assert not isinstance(pol, str), f"{name} names managed policy {pol}; write statements instead"
    for name, res in resources(raw, "AWS::IAM::Role").items():
        assert not res["Properties"].get("ManagedPolicyArns"), f"{name} attaches managed policies"
    # ...and what SAM attaches is only what the properties that cause it need.
    function_roles = {role_of(cfn, f): f for f in resources(cfn, "AWS::Lambda::Function")}
    for role, res in resources(cfn, "AWS::IAM::Role").items():
        for arn in res["Properties"].get("ManagedPolicyArns", []) or []:
            text = arn.get("Fn::Sub", "") if isinstance(arn, dict) else arn
            name = re.sub(r"^arn:(\$\{AWS::Partition\}|aws[a-z-]*):iam::aws:policy/", "", text)
            reason = SAM_MANAGED_POLICIES.get(name)
            assert reason, f"{role} has managed policy {text}, which grants more than this system needs"
            if reason == "codedeploy":
                assert role not in function_roles, f"{role}: {name} belongs on the CodeDeploy role"
                continue
            function = function_roles.get(role)
            assert function, f"{role}: {name} is only expected on a function role"
            p = props(cfn, function)
            if reason == "vpc" and profile == "small":
                # SAM attaches it whenever VpcConfig is present, and an Fn::If
                # on the profile is present; it is decided later, by
                # CloudFormation. Without a VPC config the role's ENI rights
                # are the same as production's: identical least privilege.
                assert p.get("VpcConfig") is None
                continue
            if reason == "vpc":
                assert p.get("VpcConfig"), f"{function} is not in a VPC but has {name}"
            if reason == "tracing":
                # SAM attaches it whenever the mode may be Active: a Ref to
                # the Tracing parameter is decided at deploy time.
                mode = p.get("TracingConfig", {}).get("Mode")
                assert mode == "Active" or ref_target(mode) == "Tracing"


# The SSM parameters the small profile reads (their ARNs end so).
REDIS_PARAMETER = "parameter/outbound-messages/${Env}/redis-password"
TOKEN_PARAMETER = "parameter/outbound-messages/${Env}/onlyfans-api-token"


def ssm_parameters(statements: list[dict[str, Any]]) -> set[str]:
    """The parameter names ssm actions are allowed on, and fails on any other ssm action."""
    out = set()
    for s in statements:
        actions = {a for a in as_list(s.get("Action", [])) if a.lower().startswith("ssm:")}
        if not actions:
            continue
        assert actions == {"ssm:GetParameter"}, f"ssm actions {sorted(actions)}"
        for r in as_list(s["Resource"]):
            text = r.get("Fn::Sub") if isinstance(r, dict) else r
            prefix = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
            assert text.startswith(prefix), f"{text}: this account and region only"
            out.add(text.removeprefix(prefix))
    return out


def test_producer_may_only_send_and_read_queue_attributes(cfn, profile):
    g = grants(role_statements(cfn, role_of(cfn, PRODUCER)))
    sqs = {a for a in g if a.lower().startswith("sqs:")}
    # SendMessageBatch (campaigns) is authorised by sqs:SendMessage: no action of its own.
    assert sqs <= {"sqs:SendMessage", "sqs:GetQueueAttributes"}, f"producer has {sorted(sqs)}"
    assert MAIN_QUEUE in g.get("sqs:SendMessage", set())
    assert g["sqs:SendMessage"] == {MAIN_QUEUE}, "the producer sends to the main queue only"
    assert {MAIN_QUEUE, DLQ} <= g.get("sqs:GetQueueAttributes", set())
    statements = role_statements(cfn, role_of(cfn, PRODUCER))
    if profile == "small":
        assert "secretsmanager:GetSecretValue" not in g
        assert ssm_parameters(statements) == {REDIS_PARAMETER}
        assert not any(a.startswith("kms:") for a in g), "aws/ssm's key policy already allows decrypting via SSM"
    else:
        assert g.get("secretsmanager:GetSecretValue") == {"RedisAuthSecret"}
        assert not ssm_parameters(statements)


def test_consumer_has_what_it_needs_on_each_queue_and_secret(cfn, profile):
    g = grants(role_statements(cfn, role_of(cfn, CONSUMER)))
    for action in (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
    ):
        assert MAIN_QUEUE in g.get(action, set()), f"consumer lacks {action} on the main queue"
    assert g["sqs:SendMessage"] == {MAIN_QUEUE, DLQ}
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert g[action] == {MAIN_QUEUE}, f"{action} only on the main queue"
    statements = role_statements(cfn, role_of(cfn, CONSUMER))
    if profile == "small":
        assert "secretsmanager:GetSecretValue" not in g
        assert ssm_parameters(statements) == {REDIS_PARAMETER, TOKEN_PARAMETER}
        assert not any(a.startswith("kms:") for a in g)
    else:
        assert g.get("secretsmanager:GetSecretValue") == {"OnlyFansApiTokenSecret", "RedisAuthSecret"}
        assert not ssm_parameters(statements)


# ------------------------------------------------------------------ HTTP API


def http_api_body(cfn: dict[str, Any]) -> dict[str, Any]:
    apis = resources(cfn, "AWS::ApiGatewayV2::Api")
    assert len(apis) == 1
    return next(iter(apis.values()))["Properties"]["Body"]


def test_http_api_has_exactly_the_contract_routes(cfn):
    body = http_api_body(cfn)
    routes = {(path, method) for path, ops in body["paths"].items() for method in ops if method != "parameters"}
    assert routes == ROUTES


def test_every_route_but_health_requires_the_jwt_authorizer(cfn):
    body = http_api_body(cfn)
    schemes = body.get("components", {}).get("securitySchemes", {})
    jwt = {n for n, s in schemes.items() if s.get("x-amazon-apigateway-authorizer", {}).get("type") == "jwt"}
    assert jwt, "no JWT authorizer"
    for name in jwt:
        config = schemes[name]["x-amazon-apigateway-authorizer"]["jwtConfiguration"]
        assert ref_target(config.get("issuer")) == "JwtIssuer"
        assert ref_target(config.get("audience")) == "JwtAudience"
    for path, ops in body["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            names = {n for req in op.get("security", []) for n in req}
            if (path, method) in PUBLIC_ROUTES:
                assert not (names & jwt), f"{method.upper()} {path} must not require a token"
            else:
                assert names and names <= jwt, f"{method.upper()} {path} is not behind the JWT authorizer"
    for route in resources(cfn, "AWS::ApiGatewayV2::Route").values():
        key = route["Properties"].get("RouteKey")
        if key != "GET /health":
            assert route["Properties"].get("AuthorizationType") == "JWT", f"{key} has no JWT authorizer"


def test_admin_routes_and_only_they_need_the_admin_scope(cfn):
    body = http_api_body(cfn)
    for path, ops in body["paths"].items():
        for method, op in ops.items():
            if method == "parameters" or (path, method) in PUBLIC_ROUTES:
                continue
            scopes = {s for req in op.get("security", []) for ss in req.values() for s in ss}
            if (path, method) in ADMIN_ROUTES:
                assert scopes == {ADMIN_SCOPE}, f"{method.upper()} {path} scopes {scopes}"
            else:
                assert not scopes, f"{method.upper()} {path} must not need a scope: {scopes}"
    admin_keys = {f"{m.upper()} {p}" for (p, m) in ADMIN_ROUTES}
    seen = set()
    for route in resources(cfn, "AWS::ApiGatewayV2::Route").values():
        key = route["Properties"].get("RouteKey")
        if key in admin_keys:
            seen.add(key)
            assert route["Properties"].get("AuthorizationScopes") == [ADMIN_SCOPE], key
    # SAM puts routes in the API's OpenAPI body; separate Route resources,
    # if any, must carry the scope too (checked above).
    assert seen <= admin_keys


def test_http_api_stage_throttles_and_logs_json(cfn):
    stages = resources(cfn, "AWS::ApiGatewayV2::Stage")
    assert len(stages) == 1
    p = next(iter(stages.values()))["Properties"]
    settings = p.get("DefaultRouteSettings", {})
    assert ref_target(settings.get("ThrottlingBurstLimit")) in cfn["Parameters"]
    assert ref_target(settings.get("ThrottlingRateLimit")) in cfn["Parameters"]
    logs = p.get("AccessLogSettings", {})
    assert ref_target(logs.get("DestinationArn")) in resources(cfn, "AWS::Logs::LogGroup")
    assert logs.get("Format", "").lstrip().startswith("{"), "access log format should be JSON"


def test_outbox_replay_runs_every_minute_on_the_producer(cfn):
    targets = {PRODUCER, alias_of(cfn, PRODUCER)}
    rules = [
        r["Properties"]
        for r in resources(cfn, "AWS::Events::Rule").values()
        if any(ref_target(t["Arn"]) in targets for t in r["Properties"].get("Targets", []))
    ]
    schedules = [
        s["Properties"]
        for s in resources(cfn, "AWS::Scheduler::Schedule").values()
        if ref_target(s["Properties"]["Target"]["Arn"]) in targets
    ]
    expressions = [r.get("ScheduleExpression") for r in rules] + [s.get("ScheduleExpression") for s in schedules]
    assert "rate(1 minute)" in expressions


# ------------------------------------------------------ deployments, alarms


@pytest.mark.parametrize("function", FUNCTIONS)
def test_canary_deployment_rolls_back_on_this_functions_error_alarm(cfn, function):
    alias = cfn["Resources"][alias_of(cfn, function)]
    hook = alias.get("UpdatePolicy", {}).get("CodeDeployLambdaAliasUpdate")
    assert hook, f"{function}'s alias is not deployed through CodeDeploy"
    group = props(cfn, ref_target(hook["DeploymentGroupName"]))
    assert "Canary10Percent5Minutes" in str(group.get("DeploymentConfigName"))
    assert "DEPLOYMENT_STOP_ON_ALARM" in group.get("AutoRollbackConfiguration", {}).get("Events", [])
    config = group.get("AlarmConfiguration", {})
    assert config.get("Enabled") is True
    alarm_ids = [ref_target(a["Name"]) for a in config.get("Alarms", [])]
    assert alarm_ids, f"{function}'s deployment names no alarm"
    alarms = resources(cfn, "AWS::CloudWatch::Alarm")
    watches_errors = False
    for alarm_id in alarm_ids:
        assert alarm_id in alarms, f"deployment alarm {alarm_id} does not exist"
        for metric in metric_stats(alarms[alarm_id]["Properties"]):
            if metric.get("Namespace") == "AWS/Lambda" and metric.get("MetricName") == "Errors":
                assert dimension_targets(metric, "FunctionName") == {function}, (
                    f"{alarm_id} watches another function's errors"
                )
                watches_errors = True
    assert watches_errors, f"no deployment alarm of {function} watches its Errors"


def alarms_on(cfn: dict[str, Any], namespace: Any, metric_name: str) -> list[dict[str, Any]]:
    out = []
    for alarm in resources(cfn, "AWS::CloudWatch::Alarm").values():
        p = alarm["Properties"]
        if any(m.get("Namespace") == namespace and m.get("MetricName") == metric_name for m in metric_stats(p)):
            out.append(p)
    return out


def test_operational_alarms_exist(cfn):
    depth = [
        a
        for a in alarms_on(cfn, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
        if "MetricName" in a
    ]
    queues = {next(iter(dimension_targets(a, "QueueName"))): a for a in depth}
    assert MAIN_QUEUE in queues and number(cfn, queues[MAIN_QUEUE]["Threshold"]) == 100
    assert DLQ in queues and number(cfn, queues[DLQ]["Threshold"]) == 0
    assert queues[DLQ]["ComparisonOperator"] == "GreaterThanThreshold"
    age = alarms_on(cfn, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age and number(cfn, age[0]["Threshold"]) == 600
    latency = alarms_on(cfn, {"Ref": "MetricsNamespace"}, "DeliveryLatency")
    assert latency and latency[0].get("ExtendedStatistic") == "p95" and number(cfn, latency[0]["Threshold"]) == 5000
    drain = [
        a
        for a in resources(cfn, "AWS::CloudWatch::Alarm").values()
        if ref_target(a["Properties"].get("Threshold")) == "DrainTimeAlarmSeconds"
    ]
    assert drain, "no estimated-time-to-drain alarm"
    expression = next(m for m in drain[0]["Properties"]["Metrics"] if m.get("ReturnData", True))["Expression"]
    assert "RateLimitPerMinute" in str(expression)


def test_every_alarm_notifies_the_optional_topic(cfn):
    for name, alarm in resources(cfn, "AWS::CloudWatch::Alarm").items():
        actions = alarm["Properties"].get("AlarmActions")
        assert isinstance(actions, dict) and actions.get("Fn::If", [None])[0] == "HasAlarmTopic", name


def test_dashboard_has_the_operational_widgets(cfn):
    boards = resources(cfn, "AWS::CloudWatch::Dashboard")
    assert len(boards) == 1
    body = next(iter(boards.values()))["Properties"]["DashboardBody"]
    text = body["Fn::Sub"] if isinstance(body, dict) else body
    text = text[0] if isinstance(text, list) else text
    # ${...} placeholders are strings or numbers once substituted.
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "0", text))["widgets"]
    assert len(widgets) >= 6
    titles = " ".join(w["properties"].get("title", "") for w in widgets).lower()
    for word in ("throughput", "deferral", "error", "latency", "dlq"):
        assert word in titles, f"no dashboard widget about {word}"
    logs = [w for w in widgets if w["type"] == "log"]
    assert logs and "${ConsumerLogGroup}" in text
    assert all(s in text for s in ("MessagesSent", "MessagesFailed", "MessagesDead", "UpstreamLatency", "p99"))


def test_outputs(cfn, profile):
    secret_outputs = {
        "production": {"OnlyFansApiTokenSecretArn"},
        "small": {"OnlyFansApiTokenParameterName", "RedisPasswordParameterName"},
    }[profile]
    assert {"ApiUrl", "QueueUrl", "DlqUrl", "DashboardUrl"} | secret_outputs <= set(cfn["Outputs"])
    assert "#dashboards:name=" in str(cfn["Outputs"]["DashboardUrl"]["Value"])
