"""`make cost` (tools/cost/cost.py): the bill it computes from the template.

Beside the template checks because it reads the same translation, resolved per
profile; `make test` runs this directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "cost"))
import cost  # noqa: E402

SEED = 43200


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("cost") / "report.json"
    assert cost.main(["cost.py", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_report_has_every_profile_and_volume_with_its_parts(report):
    assert report["region"] == "us-east-1" and report["prices_as_of"]
    for profile in ("small", "production"):
        for volume in ("43200", "1000000", "100000000"):
            f = report["profiles"][profile][volume]
            for key in ("monthly_usd", "fixed_usd", "variable_usd", "per_million_usd", "lines"):
                assert key in f, (profile, volume, key)
            assert f["monthly_usd"] == pytest.approx(f["fixed_usd"] + f["variable_usd"], abs=0.02)
            assert f["monthly_usd"] == pytest.approx(sum(line["usd"] for line in f["lines"].values()), abs=0.02)


def test_small_profile_runs_the_seed_volume_for_at_most_three_dollars(report):
    f = report["profiles"]["small"][str(SEED)]
    assert f["monthly_usd"] <= 3.00, f["lines"]
    # What makes it small: no NAT, no nodes, no Secrets Manager, 7 metrics.
    for line in ("NAT gateway hours", "ElastiCache nodes", "Secrets Manager"):
        assert line not in f["lines"]
    assert f["lines"]["CloudWatch custom metrics"]["quantity"] == pytest.approx(7, abs=0.01)
    assert "external_redis" in f, "the external Redis's own price is stated beside the AWS bill"


def test_production_profile_bills_what_the_template_deploys(report):
    f = report["profiles"]["production"][str(SEED)]
    # Env=production: a replica in a second AZ; the node type samconfig.toml's
    # production environment deploys (else the template's default).
    [(node_type, count)] = report["template"]["production"]["elasticache_nodes"]
    assert count == 2 and node_type.startswith("cache.")
    assert f"2 x {node_type}" in f["lines"]["ElastiCache nodes"]["detail"]
    assert f["lines"]["NAT gateway hours"]["quantity"] == 730
    assert f["lines"]["Secrets Manager"]["detail"].startswith("2 secrets")
    assert f["lines"]["CloudWatch custom metrics"]["quantity"] == pytest.approx(28, abs=0.01)
    assert report["template"]["production"]["alarms"] == report["template"]["small"]["alarms"] == 7


def test_idle_costs_are_counted(report):
    f = report["profiles"]["small"][str(SEED)]
    lines = f["lines"]
    assert "idle long polls" in lines["SQS requests"]["detail"]
    assert "minutely outbox replays" in lines["Lambda requests"]["detail"]
    assert lines["EventBridge schedule"]["quantity"] == 730 * 60


def test_a_bench_report_replaces_the_recorded_figures(tmp_path):
    bench = tmp_path / "report.json"
    bench.write_text(
        json.dumps(
            {
                "generated_at": "2026-12-02T00:00:00Z",
                "accuracy": {
                    "receives_per_delivered": 1.5,
                    "handler_ms_per_delivered": 100.0,
                    "naive": {"handler_ms_per_delivered": 5.0},
                },
            }
        )
    )
    x, _, sources = cost.load_inputs(bench=bench, sim=tmp_path / "none.json")
    assert (x["receives_per_delivered"], x["handler_ms_per_delivered"]) == (1.5, 100.0)
    assert x["handler_ms_per_delivered_unthrottled"] == 5.0
    assert any("report.json" in s for s in sources)
    recorded, _, _ = cost.load_inputs(bench=tmp_path / "absent.json", sim=tmp_path / "none.json")
    assert recorded["receives_per_delivered"] == 1.01


def test_campaigns_post_many_messages_per_request(tmp_path):
    """--campaigns: the share posted through POST /v1/campaigns is one HTTP
    request and one Lambda request per 1,000 messages and one SQS send per
    ten, so the same month costs less per message."""
    runs = {}
    for share in (0.0, 0.9):
        out = tmp_path / f"c{share}.json"
        assert cost.main(["cost.py", "--out", str(out), "--campaigns", str(share)]) == 0
        runs[share] = json.loads(out.read_text())["profiles"]["production"]["1000000"]
    single, mass = runs[0.0], runs[0.9]
    assert single["lines"]["API Gateway HTTP API"]["quantity"] == pytest.approx(1_000_000)
    assert mass["lines"]["API Gateway HTTP API"]["quantity"] == pytest.approx(100_000 + 900)
    sends = single["lines"]["SQS requests"]["quantity"] - mass["lines"]["SQS requests"]["quantity"]
    assert sends == pytest.approx(900_000 - 90_000)
    assert mass["per_million_usd_without_free_tier"] < single["per_million_usd_without_free_tier"]
    assert mass["model"]["campaign_share"] == 0.9 and "campaign_share" in single["model"]


def test_a_campaign_share_outside_zero_to_one_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        cost.main(["cost.py", "--out", str(tmp_path / "x.json"), "--campaigns", "1.5"])
