#!/usr/bin/env python3
"""`make cost`: the monthly AWS bill of template.yaml, by line, for each Profile.

What it reads:
- the template, translated to CloudFormation by tests/template/translate.py
  and resolved per profile by tests/template/profiles.py (the same code the
  template checks use), with the parameter values samconfig.toml gives the
  profile's environment ([small.deploy.parameters],
  [production.deploy.parameters]) and the rest at their defaults (only the
  defaults and Env=production with --template-defaults): which resources
  exist, memory sizes, tracing, the schedule,
  the batching window, alarms and the metrics each reads, dashboards, log
  retention, secrets, ElastiCache nodes, VPC placement;
- tools/cost/prices.json: us-east-1 list prices with their source and date,
  entered by hand (check them before quoting a figure);
- tools/cost/inputs.json: the per-message figures (the last `make bench`
  run, as recorded in the README) and every assumption, each with what it rests
  on. target/bench/report.json replaces the measured figures when it exists,
  and target/sim/cost-inputs.json (flat {"name": value}) any input it names;
- target/sim/report.json, when `make sim` has run the cost scenarios
  (sim/scenarios/cost-43k.toml, cost-1m.toml, cost-100m.toml: a day of
  43,200, 1 million and 100 million messages a month, 10 % backlogged, the
  template's defaults (cost-100m: the production profile's MaxConcurrency);
  the -w0 ones without the batching window): at those volumes and windows the
  consumer's invocations, SQS requests (receives, the
  batching window's top-ups, deletes, visibility changes) and billed time
  per message are the simulation's, which runs the real consumer, instead
  of the model's estimates from `make bench`.

What it writes: the bill by line for the volume asked (`--volume`, printed),
and target/cost/report.json for 43,200, 1 million and 100 million messages a
month (plus the volume asked):
    {"prices_as_of", "region", "profiles": {"small"|"production": {"<messages
    per month>": {"monthly_usd", "fixed_usd", "variable_usd", "per_million_usd",
    "lines": {...}, ...}}}, "inputs", "free_tiers_counted", ...}

How the bill is split: `fixed_usd` is the same model at zero messages (what
runs with no traffic: the event source mapping's idle long polls, the minutely
outbox replays and their logs and traces, alarms, dashboards, nodes, NAT,
secrets); `variable_usd` is the rest, and `per_million_usd` is that per
million messages at that volume. Free tiers: only the ones that never expire
(listed in the output), as if the account ran nothing else; the bill without
them is given too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "template"))
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

PRICES = ROOT / "tools" / "cost" / "prices.json"
INPUTS = ROOT / "tools" / "cost" / "inputs.json"
BENCH = ROOT / "target" / "bench" / "report.json"
SIM = ROOT / "target" / "sim" / "cost-inputs.json"
SIM_REPORT = ROOT / "target" / "sim" / "report.json"
# The simulation's cost scenarios: the volume (messages a month) each is a day
# of, at 10 % of messages backlogged, and the trigger's batching window.
SIM_SCENARIOS = {
    "cost-43k": (43200, 1),
    "cost-1m": (1_000_000, 1),
    "cost-100m": (100_000_000, 1),
    "cost-43k-w0": (43200, 0),
    "cost-1m-w0": (1_000_000, 0),
}
SIM_SHARE_BACKLOGGED = 0.1
SIM_FIGURES = ("invocations_per_message", "records_per_invocation", "sqs_requests_per_message", "consumer_ms_per_message")
OUT = ROOT / "target" / "cost" / "report.json"
TELEMETRY = ROOT / "shared" / "src" / "telemetry.rs"

PROFILES = ("small", "production")


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
GB = 1e9  # decimal GB: the larger count, so the bill errs high


# ------------------------------------------------------------------ inputs


def load_inputs(
    bench: Path = BENCH, sim: Path = SIM, sim_report: Path | None = None
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Flat {name: value}, {name: what it rests on}, and where the measured ones came from."""
    sim_report = SIM_REPORT if sim_report is None else sim_report
    raw = json.loads(INPUTS.read_text())
    values: dict[str, float] = {}
    notes: dict[str, str] = {}
    for section in ("measured", "assumed"):
        for name, item in raw[section].items():
            if name == "source":
                continue
            if name == "log_bytes":
                for k, v in item.items():
                    values[f"log_bytes.{k}"] = v["value"]
                    notes[f"log_bytes.{k}"] = v["what"]
                continue
            values[name] = item["value"]
            notes[name] = item["what"]
    sources = [f"measured: {raw['measured']['source']} (tools/cost/inputs.json)"]
    if bench.exists():
        report = json.loads(bench.read_text())
        acc = report.get("accuracy", {})
        taken = []
        for key, name in (
            ("receives_per_delivered", "receives_per_delivered"),
            ("handler_ms_per_delivered", "handler_ms_per_delivered"),
        ):
            if isinstance(acc.get(key), (int, float)):
                values[name] = float(acc[key])
                taken.append(name)
        naive = acc.get("naive", {})
        if isinstance(naive.get("handler_ms_per_delivered"), (int, float)):
            values["handler_ms_per_delivered_unthrottled"] = float(naive["handler_ms_per_delivered"])
            taken.append("handler_ms_per_delivered_unthrottled")
        if taken:
            sources.append(f"{shown(bench)} ({report.get('generated_at', 'undated')}): {', '.join(taken)}")
    if sim.exists():
        overrides = json.loads(sim.read_text())
        for k, v in overrides.items():
            if isinstance(v, (int, float)):
                values[k] = float(v)
        sources.append(f"{shown(sim)}: {', '.join(sorted(overrides))}")
    taken = simulated_consumer(sim_report, values, notes)
    if taken:
        sources.append(f"{shown(sim_report)}: the consumer per message at {', '.join(taken)}")
    names = metric_names()
    if names:
        values["custom_metric_names"] = len(names)
    return values, notes, sources


def simulated_consumer(path: Path, values: dict[str, float], notes: dict[str, str]) -> list[str]:
    """The cost scenarios' consumer figures per delivered message, as
    `sim.<volume>.w<batching window>.<figure>` inputs; returns the scenarios
    taken. Empty long
    polls are left out: the bill prices the event source mapping's idle polls
    as a fixed line."""
    if not path.exists():
        return []
    try:
        scenarios = json.loads(path.read_text()).get("scenarios", [])
    except (OSError, ValueError):
        return []
    taken = []
    for s in scenarios:
        volume, window = SIM_SCENARIOS.get(s.get("name"), (None, None))
        d = s.get("detail", {})
        sent = d.get("sent") or 0
        if (
            volume is None
            or sent <= 0
            or not d.get("invocations")
            or "sqs_empty_long_polls" not in d
            or s.get("handler_ms_per_delivered") is None
        ):
            continue
        what = f"simulation {s['name']} (seed {s.get('seed')}, fingerprint {d.get('fingerprint')}): "
        figures = {
            "invocations_per_message": (d["invocations"] / sent, "consumer invocations per delivered message"),
            "records_per_invocation": (
                d.get("receives_per_delivered", 1.0) * sent / d["invocations"],
                "records per consumer invocation (a deferred record is handed over again)",
            ),
            "sqs_requests_per_message": (
                (d["sqs_receives"] - d["sqs_empty_long_polls"] + d["sqs_deletes"] + d["sqs_visibility_changes"]) / sent,
                "the consumer's SQS requests per delivered message: receives (the batching window's top-ups included), "
                "DeleteMessageBatch, ChangeMessageVisibilityBatch; not the producer's sends nor empty long polls",
            ),
            "consumer_ms_per_message": (
                float(s["handler_ms_per_delivered"]),
                "billed consumer time per delivered message, the simulated upstream's 150-250 ms included",
            ),
        }
        for k, (v, note) in figures.items():
            values[f"sim.{volume}.w{window}.{k}"] = v
            notes[f"sim.{volume}.w{window}.{k}"] = what + note
        taken.append(f"{volume:,} ({s['name']})")
    return taken


def simulated(x: dict[str, float], volume: float, share_backlogged: float, window: float) -> dict[str, float] | None:
    """The simulation's consumer figures for this month, if a cost scenario is
    the same case (volume, share backlogged, batching window)."""
    if not volume or share_backlogged != SIM_SHARE_BACKLOGGED:
        return None
    figs = {k: x.get(f"sim.{int(volume)}.w{int(window)}.{k}") for k in SIM_FIGURES}
    return figs if all(v is not None for v in figs.values()) else None


def metric_names() -> list[str]:
    """The EMF metric names the functions send (shared/src/telemetry.rs)."""
    try:
        text = TELEMETRY.read_text()
    except OSError:
        return []
    return sorted(set(re.findall(r'^\s*Metric::(\w+) => "\1",', text, re.MULTILINE)))


# ---------------------------------------------------------------- template


SAMCONFIG = ROOT / "samconfig.toml"


def deploy_parameters(profile: str, use_samconfig: bool = True) -> tuple[dict[str, str], str]:
    """The parameter values a deploy of `profile` gives: samconfig.toml's
    `[<profile>.deploy.parameters]` overrides when that environment exists,
    else only Profile (and Env=production); every other parameter at its default."""
    values = {"Env": "production"}
    where = "template defaults, Env=production"
    if use_samconfig and SAMCONFIG.exists():
        import tomllib

        env = tomllib.loads(SAMCONFIG.read_text()).get(profile, {}).get("deploy", {}).get("parameters", {})
        overrides = env.get("parameter_overrides", [])
        if isinstance(overrides, str):
            overrides = overrides.split()
        for item in overrides:
            key, _, value = item.partition("=")
            values[key] = value.strip('"')
        if overrides:
            where = f"samconfig.toml [{profile}.deploy.parameters], the rest at template defaults"
    values["Profile"] = profile
    return values, where


def template_for(profile: str, values: dict[str, str] | None = None) -> dict[str, Any]:
    import logging

    import profiles
    import translate

    # The translator's metrics object warns at exit that nobody published it.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)

    translated = translate.translate(translate.load_template(translate.TEMPLATE))
    values = values if values is not None else {"Profile": profile, "Env": "production"}
    return profiles.resolve(translated, values, use_defaults=True)


def param_value(t: dict[str, Any], v: Any) -> Any:
    if isinstance(v, dict) and "Ref" in v and v["Ref"] in t.get("Parameters", {}):
        return t.get("_values", {}).get(v["Ref"], t["Parameters"][v["Ref"]].get("Default"))
    return v


def facts(t: dict[str, Any]) -> dict[str, Any]:
    """What the bill depends on, read from one profile's resolved template."""
    res = t["Resources"]

    def of(type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in res.items() if v.get("Type") == type_}

    functions = {}
    for name, f in of("AWS::Lambda::Function").items():
        p = f["Properties"]
        binary = f.get("Metadata", {}).get("BuildProperties", {}).get("Binary", name)
        functions[binary] = {
            "memory_gb": float(param_value(t, p.get("MemorySize", 128))) / 1024,
            "tracing": param_value(t, p.get("TracingConfig", {}).get("Mode")) == "Active",
            # Lambda's own platform.start/report lines go only at INFO or below.
            "platform_logs": param_value(t, p.get("LoggingConfig", {}).get("SystemLogLevel", "INFO"))
            in ("DEBUG", "INFO"),
            "vpc": bool(p.get("VpcConfig")),
            "arch": (p.get("Architectures") or ["x86_64"])[0],
            "env": p.get("Environment", {}).get("Variables", {}),
        }
    schedules_per_month = 0.0
    for rule in of("AWS::Events::Rule").values():
        m = re.fullmatch(r"rate\((\d+) minutes?\)", rule["Properties"].get("ScheduleExpression", ""))
        if m:
            schedules_per_month += 730 * 60 / int(m.group(1))
    window = 0.0
    for esm in of("AWS::Lambda::EventSourceMapping").values():
        window = float(param_value(t, esm["Properties"].get("MaximumBatchingWindowInSeconds", 0)))
    alarm_metrics = 0
    for alarm in of("AWS::CloudWatch::Alarm").values():
        p = alarm["Properties"]
        alarm_metrics += 1 if "MetricName" in p else sum(1 for m in p.get("Metrics", []) if "MetricStat" in m)
    nodes = []
    for group in of("AWS::ElastiCache::ReplicationGroup").values():
        p = group["Properties"]
        if "NumNodeGroups" in p:  # cluster mode: shards of a primary and its replicas
            count = int(param_value(t, p["NumNodeGroups"])) * (1 + int(param_value(t, p["ReplicasPerNodeGroup"])))
        else:
            count = int(param_value(t, p.get("NumCacheClusters", 1)))
        nodes.append((param_value(t, p["CacheNodeType"]), count))
    retention = [int(g["Properties"].get("RetentionInDays", 3653)) for g in of("AWS::Logs::LogGroup").values()]
    by_priority = {str(f["env"].get("METRICS_BY_PRIORITY", "true")) for f in functions.values()}
    ttl = [param_value(t, f["env"].get("STATUS_TTL_SECONDS", 604800)) for f in functions.values()]
    return {
        "functions": functions,
        "http_apis": len(of("AWS::ApiGatewayV2::Api")),
        "schedule_invocations": schedules_per_month,
        "batching_window_s": window,
        "alarm_metrics": alarm_metrics,
        "alarms": len(of("AWS::CloudWatch::Alarm")),
        "dashboards": len(of("AWS::CloudWatch::Dashboard")),
        "log_retention_days": min(retention) if retention else 30,
        "secrets": len(of("AWS::SecretsManager::Secret")),
        "ssm_parameters": sum(1 for f in functions.values() for k in f["env"] if k.endswith("_PARAMETER")),
        "elasticache_nodes": nodes,
        "in_vpc": any(f["vpc"] for f in functions.values()),
        "metrics_by_priority": "true" in by_priority,
        "status_ttl_days": float(max(ttl)) / 86400 if ttl else 7.0,
    }


# -------------------------------------------------------------------- bill


class Bill:
    """Lines of one month's bill. Free tiers are applied per price key, across lines."""

    def __init__(self, prices: dict[str, Any]):
        # A copy: a bill may adjust a free tier for itself (logs storage).
        self.prices = dict(prices["prices"])
        self.lines: dict[str, dict[str, Any]] = {}
        self.free_used: dict[str, float] = {}

    def add(self, line: str, key: str, quantity: float, detail: str = "", usd_each: float | None = None) -> None:
        price = self.prices[key]
        each = (price["usd"] / price.get("per", 1)) if usd_each is None else usd_each
        free = price.get("free_tier", {})
        billable = quantity
        if free.get("kind") == "always" and "quantity" in free:
            left = free["quantity"] - self.free_used.get(key, 0.0)
            covered = max(0.0, min(quantity, left))
            self.free_used[key] = self.free_used.get(key, 0.0) + covered
            billable = quantity - covered
        entry = self.lines.setdefault(
            line, {"usd": 0.0, "usd_without_free_tier": 0.0, "quantity": 0.0, "unit": price["unit"], "detail": detail}
        )
        entry["usd"] += billable * each
        entry["usd_without_free_tier"] += quantity * each
        entry["quantity"] += quantity
        if detail and detail not in entry["detail"]:
            entry["detail"] = (entry["detail"] + "; " + detail).strip("; ")

    def total(self, free_tier: bool = True) -> float:
        return sum(v["usd" if free_tier else "usd_without_free_tier"] for v in self.lines.values())


def month_bill(
    f: dict[str, Any],
    prices: dict[str, Any],
    x: dict[str, float],
    volume: float,
    share_backlogged: float,
    floor: bool = False,
) -> tuple[Bill, dict[str, Any]]:
    """The bill for `volume` messages in a 730-hour month. Returns the bill and
    the derived quantities (printed as the model's working).

    `floor` (with volume 0): the limit of the bill as traffic goes to zero but
    not to nothing: the metrics are sent every hour and both functions start
    cold now and then. That is the fixed part of every real month."""
    p = prices
    hours = p["month_hours"]
    seconds = hours * 3600
    minutes = hours * 60
    days = hours / 24
    b = Bill(p)
    fn = f["functions"]
    prod, cons = fn["producer"], fn["consumer"]
    lb = {k.split(".", 1)[1]: v for k, v in x.items() if k.startswith("log_bytes.")}

    # --- delivery model
    rate = volume / seconds
    window = f["batching_window_s"]
    batch = min(10.0, 1.0 + rate * window) if volume else 1.0
    receives = x["receives_per_delivered"]
    invocations = volume * receives / batch
    b_bench = x["bench_backlogged_share"]
    unthrottled = x["handler_ms_per_delivered_unthrottled"]
    backlogged_ms = (x["handler_ms_per_delivered"] - (1 - b_bench) * unthrottled) / b_bench
    handler_ms = share_backlogged * backlogged_ms + (1 - share_backlogged) * unthrottled
    upstream_ms = x["upstream_latency_ms"] / batch
    consumer_ms = handler_ms + upstream_ms
    sim = simulated(x, volume, share_backlogged, window)
    if sim:
        invocations = volume * sim["invocations_per_message"]
        consumer_ms = sim["consumer_ms_per_message"]
        batch = sim["records_per_invocation"]
    replays = f["schedule_invocations"]
    cold_prod = x["cold_starts_per_function_per_day"] * days
    cold_cons = x["cold_starts_per_function_per_day"] * days if (volume or floor) else 0.0
    work = {
        "messages_per_second": rate,
        "mean_batch": batch,
        "consumer_invocations": invocations,
        "consumer_ms_per_message": consumer_ms,
        "consumer_figures_from": "simulation" if sim else "model (make bench)",
        "handler_ms_backlogged_message": backlogged_ms,
        "outbox_replays": replays,
    }

    # --- intake: single messages (one POST, one SendMessage each) and
    # campaigns (one POST per `campaign_recipients_per_call` messages, sent
    # with SendMessageBatch in tens)
    camp = x.get("campaign_share", 0.0)
    singles = volume * (1 - camp)
    camp_calls = volume * camp / x["campaign_recipients_per_call"]
    posts = singles + camp_calls
    work["campaign_share"] = camp
    work["producer_posts"] = posts

    # --- API Gateway
    if f["http_apis"]:
        detail = "one POST per message" if not camp else f"one POST per message, one per {x['campaign_recipients_per_call']:g} campaign messages"
        b.add("API Gateway HTTP API", "http_api_requests", posts, detail + " (GETs extra)")

    # --- Lambda
    b.add("Lambda requests", "lambda_requests", posts, "producer POSTs")
    b.add("Lambda requests", "lambda_requests", replays, "minutely outbox replays")
    b.add("Lambda requests", "lambda_requests", invocations, "consumer batches")
    for name, ms, mem in (
        ("producer POSTs", singles * x["producer_ms_per_request"], prod["memory_gb"]),
        ("producer campaign POSTs", camp_calls * x["producer_ms_per_campaign_call"], prod["memory_gb"]),
        ("outbox replays", replays * x["outbox_replay_ms"], prod["memory_gb"]),
        ("consumer", volume * consumer_ms, cons["memory_gb"]),
        ("cold-start inits", (cold_prod + cold_cons) * x["init_ms"], prod["memory_gb"]),
    ):
        b.add("Lambda compute (arm64 GB-s)", "lambda_arm64_gb_s", ms / 1000 * mem, name)

    # --- SQS
    idle_polls = x["idle_pollers"] * (60 / x["long_poll_seconds"]) * minutes
    b.add("SQS requests", "sqs_requests", singles, "SendMessage")
    if camp:
        b.add("SQS requests", "sqs_requests", volume * camp / 10, "SendMessageBatch (campaigns, in tens)")
    b.add("SQS requests", "sqs_requests", idle_polls, "idle long polls of the event source mapping")
    if sim:
        b.add(
            "SQS requests",
            "sqs_requests",
            volume * sim["sqs_requests_per_message"],
            "the consumer's receives, window top-ups, DeleteMessageBatch and visibility changes (simulation)",
        )
    else:
        b.add("SQS requests", "sqs_requests", invocations, "receives that return a batch")
        b.add("SQS requests", "sqs_requests", invocations, "DeleteMessageBatch")
        b.add(
            "SQS requests",
            "sqs_requests",
            volume * share_backlogged * x["deferrals_per_backlogged_message"],
            "ChangeMessageVisibility (deferrals)",
        )

    # --- network
    if f["in_vpc"]:
        b.add("NAT gateway hours", "nat_gateway_hours", x["nat_gateways"] * hours, f"{x['nat_gateways']:g} gateway(s)")
        b.add("NAT gateway data", "nat_gateway_gb", volume * x["nat_bytes_per_message"] / GB)
    b.add("Data transfer out", "data_transfer_out_gb", volume * x["internet_out_bytes_per_message"] / GB)

    # --- Redis
    stored_gib = volume / days * f["status_ttl_days"] * x["redis_bytes_stored_per_message"] / 2**30
    work["redis_data_gib"] = stored_gib
    node_table = p["prices"]["elasticache_valkey_node_hours"]["nodes"]
    for node_type, count in f["elasticache_nodes"]:
        chosen = node_type
        need = stored_gib / x["redis_max_memory_share"]
        if node_table[node_type]["memory_gib"] < need:
            fits = [n for n, v in sorted(node_table.items(), key=lambda kv: kv[1]["usd"]) if v["memory_gib"] >= need]
            chosen = fits[0] if fits else max(node_table, key=lambda n: node_table[n]["memory_gib"])
            work["redis_resized"] = f"{node_type} holds {node_table[node_type]['memory_gib']} GiB < {need:.1f} GiB needed: priced as {chosen}"
        b.add(
            "ElastiCache nodes",
            "elasticache_valkey_node_hours",
            count * hours,
            f"{count} x {chosen}",
            usd_each=node_table[chosen]["usd"],
        )
        b.add(
            "ElastiCache cross-AZ traffic",
            "elasticache_cross_az_gb",
            volume * x["redis_bytes_per_message"] * x["cross_az_share"] / GB,
        )

    # --- secrets
    reads = (cold_prod + cold_cons) * x["secret_reads_per_cold_start"]
    if f["secrets"]:
        b.add("Secrets Manager", "secrets_manager_secret_months", f["secrets"], f"{f['secrets']} secrets")
        b.add("Secrets Manager", "secrets_manager_api_calls", reads, "reads at cold start")
    if f["ssm_parameters"]:
        b.add("SSM Parameter Store (SecureString)", "ssm_standard_parameters", reads, "standard parameters, GetParameter")
        b.add("KMS (SecureString decrypts, aws/ssm)", "kms_requests", reads)

    # --- CloudWatch
    per_name = (x["priorities"] + 1) if f["metrics_by_priority"] else 1
    # Prorated by the hour: the share of hours in which a message was sent.
    active = 1.0 if floor else 1 - math.exp(-volume / hours)
    metrics = x["custom_metric_names"] * per_name * active
    b.add(
        "CloudWatch custom metrics",
        "cloudwatch_custom_metrics",
        metrics,
        f"{x['custom_metric_names']:g} names x {per_name:g} dimension sets" + (" (by Priority)" if per_name > 1 else ""),
    )
    b.add("CloudWatch alarms", "cloudwatch_alarm_metrics", f["alarm_metrics"], f"{f['alarms']} alarms")
    b.add("CloudWatch dashboards", "cloudwatch_dashboards", f["dashboards"])
    platform_p = lb["platform_per_invocation"] if prod.get("platform_logs", True) else 0.0
    platform_c = lb["platform_per_invocation"] if cons.get("platform_logs", True) else 0.0
    log_bytes = (
        # A campaign call writes one MessagesQueued line for all its messages.
        posts * lb["emf_lines_producer"] * lb["emf_line"]
        + singles * lb["app_log_producer"]
        + posts * (platform_p + lb["access_log_per_request"])
        + invocations * platform_c
        + volume * (lb["emf_delivery_line"] + lb["app_log_consumer"])
        + replays * platform_p
    )
    ingested = log_bytes / GB
    work["log_bytes_per_message"] = (log_bytes - replays * platform_p) / volume if volume else 0.0
    b.add("CloudWatch Logs ingestion", "cloudwatch_logs_ingestion_gb", ingested)
    stored = ingested * min(1.0, f["log_retention_days"] / days) * x["log_compression"]
    # The 5 GB free tier covers ingestion and storage together.
    b.free_used["cloudwatch_logs_storage_gb_months"] = 0.0
    b.prices["cloudwatch_logs_storage_gb_months"] = dict(
        b.prices["cloudwatch_logs_storage_gb_months"],
        free_tier={"quantity": max(0.0, 5 - ingested), "kind": "always"},
    )
    b.add("CloudWatch Logs storage", "cloudwatch_logs_storage_gb_months", stored, f"{f['log_retention_days']} days kept")

    # --- X-Ray (Lambda samples 1 request a second per function, then 5 %)
    def sampled(n: float) -> float:
        r = n / seconds
        res = x["xray_reservoir_per_s"]
        return n if r <= res else seconds * (res + x["xray_rate"] * (r - res))

    traces = 0.0
    if prod["tracing"]:
        traces += sampled(volume + replays)
    if cons["tracing"]:
        traces += sampled(invocations)
    b.add(
        "X-Ray traces",
        "xray_traces_recorded",
        traces,
        "Tracing: Active, Lambda's fixed sampling" if prod["tracing"] or cons["tracing"] else "Tracing: PassThrough (none)",
    )
    b.add("EventBridge schedule", "eventbridge_scheduled_rules", replays)
    b.add("CodeDeploy (canary)", "codedeploy_lambda", 0)

    work["redis_commands"] = volume * x["redis_commands_per_message"] + replays * x["redis_commands_per_replay"]
    return b, work


def external_redis(prices: dict[str, Any], work: dict[str, Any]) -> dict[str, Any]:
    """The small profile's Redis, from the provider's published prices (not AWS)."""
    e = prices["external_redis"]
    free, payg = e["upstash_free"], e["upstash_pay_as_you_go"]
    commands = work["redis_commands"]
    gb = work["redis_data_gib"] * 2**30 / GB
    if commands <= free["commands_per_month"] and gb <= free["storage_gb"]:
        return {"plan": "Upstash free", "usd": 0.0, "commands": commands, "data_gb": gb, "source": free["source"]}
    usd = commands / 100_000 * payg["usd_per_100k_commands"] + max(0.0, gb - payg["storage_gb_free"]) * payg["usd_per_gb_month"]
    return {"plan": "Upstash pay-as-you-go", "usd": usd, "commands": commands, "data_gb": gb, "source": payg["source"]}


def figures(profile: str, f, prices, x, volume: float, share: float, accounts: int) -> dict[str, Any]:
    bill, work = month_bill(f, prices, x, volume, share)
    idle, _ = month_bill(f, prices, x, 0.0, share, floor=True)
    none, _ = month_bill(f, prices, x, 0.0, share)
    total, fixed = bill.total(), idle.total()
    variable = total - fixed
    list_variable = bill.total(free_tier=False) - idle.total(free_tier=False)
    out = {
        "messages_per_month": volume,
        "accounts": accounts,
        "share_backlogged": share,
        "monthly_usd": round(total, 2),
        "fixed_usd": round(fixed, 2),
        "variable_usd": round(variable, 2),
        "per_million_usd": round(variable / volume * 1e6, 2) if volume else None,
        # Without free tiers: the marginal price of a million messages once the
        # free allowances are used up (by this volume or by anything else).
        "per_million_usd_without_free_tier": round(list_variable / volume * 1e6, 2) if volume else None,
        "monthly_usd_without_free_tier": round(bill.total(free_tier=False), 2),
        "fixed_usd_without_free_tier": round(idle.total(free_tier=False), 2),
        # With no traffic at all (no metric sent, no consumer invocation).
        "no_traffic_usd": round(none.total(), 2),
        "no_traffic_usd_without_free_tier": round(none.total(free_tier=False), 2),
        "lines": {
            k: {
                "usd": round(v["usd"], 4),
                "usd_without_free_tier": round(v["usd_without_free_tier"], 4),
                "quantity": round(v["quantity"], 3),
                "unit": v["unit"],
                "detail": v["detail"],
                "fixed_usd": round(idle.lines.get(k, {}).get("usd", 0.0), 4),
                "no_traffic_usd": round(none.lines.get(k, {}).get("usd", 0.0), 4),
            }
            for k, v in bill.lines.items()
        },
        "model": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in work.items()},
        # Each line's share of the variable cost, per million messages, at list price.
        "per_million_by_line_without_free_tier": {
            k: round((v["usd_without_free_tier"] - idle.lines.get(k, {}).get("usd_without_free_tier", 0.0)) / volume * 1e6, 3)
            for k, v in bill.lines.items()
        }
        if volume
        else {},
    }
    if profile == "small":
        redis = external_redis(prices, work)
        out["external_redis"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in redis.items()}
        out["monthly_usd_with_external_redis"] = round(total + redis["usd"], 2)
    return out


def levers(f, prices, x, volume: float, share: float) -> dict[str, Any]:
    """What the production per-million figure would be with each lever pulled
    (computed, not applied: each is a change for its owner to decide)."""
    out = {}
    lean = dict(x)
    lean["log_bytes.platform_per_invocation"] = 0  # SystemLogLevel=WARN drops platform.start/report
    lean["log_bytes.app_log_consumer"] = 0  # ApplicationLogLevel=WARN
    traced = json.loads(json.dumps(f))
    for fn in traced["functions"].values():
        fn["tracing"] = True
    short_ttl = dict(f, status_ttl_days=1.0)
    mass = dict(x, campaign_share=0.9)
    for name, (ff, xx) in {
        "as_is": (f, x),
        "lean_logs (ApplicationLogLevel=WARN: no INFO 'sent' line)": (f, lean),
        "status_ttl_1_day (StatusTtlSeconds=86400: Redis memory)": (short_ttl, x),
        "lean_logs_and_ttl_1_day": (dict(f, status_ttl_days=1.0), lean),
        "with_xray (Tracing=Active: what tracing adds)": (traced, x),
        "campaigns_90 (90 % of messages posted as campaigns of 1,000 recipients)": (f, mass),
        "campaigns_90_lean_logs_ttl_1_day": (dict(f, status_ttl_days=1.0), dict(lean, campaign_share=0.9)),
        "batching_window_0 (BatchingWindowSeconds=0: no top-up receives, smaller batches)": (
            dict(f, batching_window_s=0.0),
            x,
        ),
    }.items():
        bb, _ = month_bill(ff, prices, xx, volume, share)
        ii, _ = month_bill(ff, prices, xx, 0.0, share, floor=True)
        out[name] = round((bb.total(free_tier=False) - ii.total(free_tier=False)) / volume * 1e6, 2)
    return out


def crossover(fs, prices, x, share: float) -> float | None:
    """Messages a month above which production (all AWS) costs less than small
    (AWS + the external Redis's pay-as-you-go price)."""

    def diff(v: float) -> float:
        s = figures("small", fs["small"], prices, x, v, share, 0)
        p = figures("production", fs["production"], prices, x, v, share, 0)
        return s["monthly_usd_with_external_redis"] - p["monthly_usd"]

    lo, hi = 1e4, 1e9
    if diff(lo) > 0 or diff(hi) < 0:
        return None
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if diff(mid) < 0 else (lo, mid)
    return round(hi, -3)


# ------------------------------------------------------------------ output


def money(v: float) -> str:
    return f"${v:,.2f}" if v >= 0.005 or v == 0 else f"${v:,.4f}"


def print_bill(profile: str, fig: dict[str, Any]) -> None:
    v = fig["messages_per_month"]
    print(
        f"\n== Profile={profile}: {v:,.0f} messages/month, {fig['accounts']:,} accounts, "
        f"{fig['share_backlogged']:.0%} of messages from backlogged accounts"
        + (f", {fig['model']['campaign_share']:.0%} posted as campaigns" if fig["model"].get("campaign_share") else "")
    )
    print(f"  {'line':38} {'quantity':>16}  {'list price':>11}  {'after free tier':>15}  {'of it fixed':>11}")
    for name, line in sorted(fig["lines"].items(), key=lambda kv: -kv[1]["usd_without_free_tier"]):
        print(
            f"  {name:38} {line['quantity']:>16,.2f}  {money(line['usd_without_free_tier']):>11}  "
            f"{money(line['usd']):>15}  {money(line['fixed_usd']):>11}   {line['detail']}"
        )
    print(f"  {'total (AWS)':38} {'':>16}  {money(fig['monthly_usd_without_free_tier']):>11}  {money(fig['monthly_usd']):>15}")
    def pm(v: float | None) -> str:
        return "n/a" if v is None else money(v)

    print(
        f"  fixed {money(fig['fixed_usd'])} + variable {money(fig['variable_usd'])}"
        f" = {money(fig['monthly_usd'])} a month (no traffic at all: {money(fig['no_traffic_usd'])});"
        f" variable per million messages: {pm(fig['per_million_usd'])}"
        f" ({pm(fig['per_million_usd_without_free_tier'])} without free tiers)"
    )
    if "external_redis" in fig:
        r = fig["external_redis"]
        print(
            f"  external Redis (not AWS): {r['plan']}, {r['commands']:,.0f} commands, {r['data_gb']:.2f} GB: "
            f"{money(r['usd'])} a month -> {money(fig['monthly_usd_with_external_redis'])} with it ({r['source']})"
        )
    m = fig["model"]
    print(
        f"  model: {m['messages_per_second']:.3f} msg/s, mean batch {m['mean_batch']:.2f}, "
        f"{m['consumer_invocations']:,.0f} consumer invocations, {m['consumer_ms_per_message']:.0f} ms consumer time/msg, "
        f"{m['log_bytes_per_message']:,.0f} log bytes/msg, Redis data {m['redis_data_gib']:.2f} GiB; "
        f"consumer figures from the {m['consumer_figures_from']}"
    )
    if "redis_resized" in m:
        print(f"  NOTE: {m['redis_resized']}")


def markdown(report: dict[str, Any], volumes: list[float]) -> str:
    """The tables docs/cost.md shows: one column per (profile, volume)."""
    cols = [(p, str(int(v))) for p in PROFILES for v in volumes]
    figs = {c: report["profiles"][c[0]][c[1]] for c in cols}
    names = sorted(
        {k for f in figs.values() for k in f["lines"]},
        key=lambda k: -max(f["lines"].get(k, {}).get("usd_without_free_tier", 0) for f in figs.values()),
    )

    def short(v: str) -> str:
        n = int(v)
        return f"{n / 1e6:g} M" if n >= 1_000_000 else f"{n:,}"

    head = "| line (USD a month, after free tiers) | " + " | ".join(f"{p} {short(v)}" for p, v in cols) + " |"
    out = [head, "|" + " --- |" * (len(cols) + 1)]
    for n in names:
        cells = []
        for c in cols:
            line = figs[c]["lines"].get(n)
            cells.append("—" if line is None else f"{line['usd']:,.2f}")
        if any(cell not in ("—", "0.00") for cell in cells):
            out.append(f"| {n} | " + " | ".join(cells) + " |")
    rows = [
        ("**AWS total**", lambda f: f"**{f['monthly_usd']:,.2f}**"),
        ("of it fixed (the floor as traffic goes to zero)", lambda f: f"{f['fixed_usd']:,.2f}"),
        ("with no traffic at all", lambda f: f"{f['no_traffic_usd']:,.2f}"),
        ("variable per million messages", lambda f: f"{f['per_million_usd']:,.2f}"),
        ("… at list price (no free tier)", lambda f: f"{f['per_million_usd_without_free_tier']:,.2f}"),
        ("AWS total without any free tier", lambda f: f"{f['monthly_usd_without_free_tier']:,.2f}"),
        (
            "external Redis (Upstash, not AWS)",
            lambda f: f"{f['external_redis']['usd']:,.2f} ({f['external_redis']['plan'].removeprefix('Upstash ')})"
            if "external_redis" in f
            else "—",
        ),
        (
            "**total with the external Redis**",
            lambda f: f"**{f['monthly_usd_with_external_redis']:,.2f}**" if "external_redis" in f else f"**{f['monthly_usd']:,.2f}**",
        ),
    ]
    for label, cell in rows:
        out.append(f"| {label} | " + " | ".join(cell(figs[c]) for c in cols) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volume", type=float, help="messages a month to print the bill for (default: 43200)")
    ap.add_argument("--accounts", type=int, help="accounts (default: 50 per 43,200 messages)")
    ap.add_argument("--backlogged", type=float, help="share of messages from backlogged accounts (default 0.10)")
    ap.add_argument(
        "--campaigns",
        type=float,
        help="share of messages posted through POST /v1/campaigns, 1,000 recipients a call (default 0: every message its own POST)",
    )
    ap.add_argument("--profile", choices=PROFILES, help="print only this profile")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--template-defaults",
        action="store_true",
        help="ignore samconfig.toml's parameter overrides (template defaults only)",
    )
    args = ap.parse_args(argv[1:])

    prices = json.loads(PRICES.read_text())
    x, notes, sources = load_inputs()
    scen = json.loads(INPUTS.read_text())["scenarios"]
    share = scen["share_backlogged"] if args.backlogged is None else args.backlogged
    if args.campaigns is not None:
        if not 0 <= args.campaigns <= 1:
            ap.error("--campaigns is a share between 0 and 1")
        x["campaign_share"] = args.campaigns

    def accounts_for(v: float) -> int:
        if args.accounts is not None and v == args.volume:
            return args.accounts
        return max(1, round(v * scen["seed_accounts"] / scen["seed_volume"]))

    fs, where = {}, {}
    for p in PROFILES:
        values, where[p] = deploy_parameters(p, not args.template_defaults)
        t = template_for(p, values)
        t["_values"] = values
        fs[p] = facts(t)
    volumes = list(scen["volumes"])
    if args.volume and args.volume not in volumes:
        volumes.append(args.volume)
    report: dict[str, Any] = {
        "prices_as_of": prices["as_of"],
        "region": prices["region"],
        "prices_note": prices["_note"],
        "inputs_from": sources,
        "inputs": {k: {"value": v, "what": notes.get(k, "")} for k, v in sorted(x.items())},
        "free_tiers_counted": {
            k: v["free_tier"] for k, v in prices["prices"].items() if v.get("free_tier", {}).get("kind") == "always"
        },
        "free_tiers_not_counted": {
            k: v["free_tier"] for k, v in prices["prices"].items() if v.get("free_tier", {}).get("kind") == "12_months"
        },
        "template": {p: {k: v for k, v in f.items() if k != "functions"} for p, f in fs.items()},
        "parameters_from": where,
        "profiles": {p: {} for p in PROFILES},
    }
    for p in PROFILES:
        for v in volumes:
            report["profiles"][p][str(int(v))] = figures(p, fs[p], prices, x, v, share, accounts_for(v))
    report["production_levers_per_million"] = {
        str(int(v)): levers(fs["production"], prices, x, v, share) for v in scen["volumes"]
    }
    report["crossover_messages_per_month"] = crossover(fs, prices, x, share)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report, scen["volumes"]))

    asked = args.volume or scen["seed_volume"]
    print(f"Monthly AWS bill from template.yaml, us-east-1 list prices as of {prices['as_of']} (entered by hand: check them)")
    print("Inputs: " + "; ".join(sources))
    print("Parameters: " + "; ".join(f"{p}: {w}" for p, w in where.items()))
    for p in [args.profile] if args.profile else PROFILES:
        print_bill(p, report["profiles"][p][str(int(asked))])
    print("\nFree tiers counted (always free; as if the account used them for nothing else): " + ", ".join(report["free_tiers_counted"]))
    print("Not counted (first 12 months only): " + ", ".join(report["free_tiers_not_counted"]))
    print("Assumptions (tools/cost/inputs.json; every value is in the report):")
    for k in ("upstream_latency_ms", "idle_pollers", "nat_gateways", "redis_commands_per_message", "cold_starts_per_function_per_day"):
        print(f"  {k} = {x[k]:g}: {notes[k]}")
    c = report["crossover_messages_per_month"]
    if c:
        print(f"\nsmall (with the external Redis on pay-as-you-go) costs more than production above ~{c:,.0f} messages a month")
    print(f"wrote {shown(args.out)} and {shown(args.out.with_suffix('.md'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
