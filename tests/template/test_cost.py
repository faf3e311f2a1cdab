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


def sim_scenario(name: str, sent: int, invocations: int, receives: int, empty_long_polls: int, ms: float) -> dict:
    return {
        "name": name,
        "seed": 1,
        "handler_ms_per_delivered": ms,
        "detail": {
            "sent": sent,
            "invocations": invocations,
            "sqs_receives": receives,
            "sqs_empty_long_polls": empty_long_polls,
            "sqs_deletes": invocations,
            "sqs_visibility_changes": 10,
            "receives_per_delivered": 1.8,
            "fingerprint": "0",
        },
    }


def test_the_simulations_cost_scenarios_replace_the_consumer_model_at_their_volume(tmp_path, monkeypatch):
    """With target/sim/report.json holding a cost scenario, the consumer's
    invocations, SQS requests and time per message at that volume and
    batching window are the simulation's; empty long polls stay the fixed
    idle line; other volumes and windows keep the model."""
    report = tmp_path / "sim.json"
    report.write_text(
        json.dumps(
            {
                "scenarios": [
                    sim_scenario("cost-1m", 1000, 900, 2100, 100, 200.0),
                    sim_scenario("cost-1m-w0", 1000, 1100, 1200, 100, 190.0),
                    sim_scenario("steady-day", 1000, 1, 1, 0, 1.0),
                ]
            }
        )
    )
    x, _, sources = cost.load_inputs(bench=tmp_path / "absent.json", sim=tmp_path / "none.json", sim_report=report)
    assert x["sim.1000000.w1.invocations_per_message"] == 0.9
    # receives less the empty long polls, deletes, visibility changes
    assert x["sim.1000000.w1.sqs_requests_per_message"] == pytest.approx((2100 - 100 + 900 + 10) / 1000)
    assert x["sim.1000000.w0.consumer_ms_per_message"] == 190.0
    assert not any(k.startswith("sim.") and "steady" in k for k in x)
    assert any("cost-1m" in s for s in sources)

    assert cost.simulated(x, 1_000_000, 0.1, 1) == {
        "invocations_per_message": 0.9,
        "records_per_invocation": 2.0,
        "sqs_requests_per_message": pytest.approx(2.91),
        "consumer_ms_per_message": 200.0,
    }
    assert cost.simulated(x, 1_000_000, 0.1, 0)["consumer_ms_per_message"] == 190.0
    assert cost.simulated(x, 43200, 0.1, 1) is None, "no scenario for that volume"
    assert cost.simulated(x, 1_000_000, 0.25, 1) is None, "another share backlogged"

    out = tmp_path / "bill.json"
    monkeypatch.setattr(cost, "SIM_REPORT", report)
    assert cost.main(["cost.py", "--out", str(out)]) == 0
    bill = json.loads(out.read_text())["profiles"]["production"]
    simulated, modelled = bill["1000000"], bill["100000000"]
    assert simulated["model"]["consumer_figures_from"] == "simulation"
    assert simulated["model"]["consumer_invocations"] == pytest.approx(900_000)
    assert simulated["model"]["consumer_ms_per_message"] == 200.0
    assert simulated["model"]["mean_batch"] == 2.0
    assert "(simulation)" in simulated["lines"]["SQS requests"]["detail"]
    assert modelled["model"]["consumer_figures_from"] == "model (make bench)"
    assert "receives that return a batch" in modelled["lines"]["SQS requests"]["detail"]
