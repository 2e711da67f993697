"""``fs parity check`` through the real CLI: exit codes, JSON, and no PII in any output."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from fs_platform.cli.main import app
from tests.parity.conftest import changed, newest

pytestmark = pytest.mark.redis


def _run(repo, *args):
    return CliRunner().invoke(app, ["--repo", str(repo), "parity", "check", *args])


def test_healthy_check_exits_zero_with_json(stores, parity_repo):
    result = _run(parity_repo[0], "--sample", "30", "--seed", "4", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "ok" and len(payload["views"]) == 4


def test_breach_exits_three_and_masks_pii_in_both_outputs(stores, parity_repo, tmp_path):
    profile = stores.data.customer_profile
    customer = int(profile.customer_id.value_counts().index[-1])
    row = newest(profile, "customer_id", customer)
    secret = row.email_domain.iloc[0]
    stores.write(
        "customer_profile",
        changed(
            row,
            email_domain="canary-leak.example",
            country="QQ",
            created_at=row.created_at.iloc[0] + timedelta(seconds=1),
        ),
    )
    entities = tmp_path / "entities.csv"
    entities.write_text(f"customer_id\n{customer}\n")
    prom = tmp_path / "parity.prom"
    human = _run(
        parity_repo[0], "--views", "customer_profile", "--entities", str(entities), "--prom-file", str(prom)
    )
    machine = _run(parity_repo[0], "--views", "customer_profile", "--entities", str(entities), "--json")
    assert human.exit_code == 3 and machine.exit_code == 3, human.output
    assert "value_mismatch" in human.stdout and "BREACH" in human.stdout and "<masked>" in human.stdout
    payload = json.loads(machine.stdout)
    assert payload["views"][0]["total"]["counts"]["value_mismatch"] == 2
    assert {e["online_value"] for e in payload["views"][0]["examples"]} == {"<masked>"}
    for text in (human.stdout, machine.stdout, prom.read_text()):
        assert "canary-leak.example" not in text and secret not in text and "QQ" not in text


def test_keys_that_match_nothing_are_no_data_exit_four(stores, parity_repo, tmp_path):
    """Entity keys with no row online or offline prove nothing: verdict no_data, exit 4 (not "ok")."""
    entities = tmp_path / "unknown.csv"
    entities.write_text("customer_id\n987654321\n987654322\n")
    human = _run(parity_repo[0], "--views", "customer_profile", "--entities", str(entities))
    machine = _run(parity_repo[0], "--views", "customer_profile", "--entities", str(entities), "--json")
    assert human.exit_code == 4 and machine.exit_code == 4, human.output
    assert "no data" in human.stdout and "NO_DATA" in human.stdout
    payload = json.loads(machine.stdout)
    assert payload["verdict"] == "no_data" and payload["views"][0]["with_data"] == 0


def test_a_header_only_entities_file_is_no_entities_exit_four(stores, parity_repo, tmp_path):
    """No keys at all (#21.10: crashed with ArrowNotImplementedError): nothing checked, exit 4."""
    entities = tmp_path / "empty.csv"
    entities.write_text("customer_id,merchant_id\n")
    human = _run(
        parity_repo[0],
        "--views",
        "customer_profile",
        "--views",
        "merchant_risk_daily",
        "--entities",
        str(entities),
    )
    assert human.exit_code == 4, human.output
    assert "no data: no entities to check for customer_profile" in human.stdout and "NO_DATA" in human.stdout
    machine = _run(parity_repo[0], "--views", "customer_profile", "--entities", str(entities), "--json")
    assert machine.exit_code == 4 and json.loads(machine.stdout)["views"][0]["entities"] == 0


def test_errors_are_one_line_exit_one(stores, parity_repo, capsys):
    from fs_platform.cli.main import main

    assert main(["--repo", str(parity_repo[0]), "parity", "check", "--views", "no_such_view"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown feature view 'no_such_view' — known: customer_profile" in err[0]


def test_replay_command_renders_json(parity_repo):
    args = [
        "--repo",
        str(parity_repo[0]),
        "parity",
        "replay",
        "--customers",
        "40",
        "--days",
        "1",
        "--json",
        "--tolerance",
        "avg_amount_24h:abs=0.0002",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "ok" and payload["stream_rows"] == payload["batch_rows"] > 0


def test_a_past_as_of_with_keys_expired_since_exits_zero(stores, parity_repo, tmp_path):
    """#14.7: `fs parity check --as-of <incident time>` on keys whose ttl ran out since: exit 0, not 3."""
    from tests.parity.test_check import _expired_since

    customer, as_of = _expired_since(stores)
    entities = tmp_path / "entities.csv"
    entities.write_text(f"customer_id\n{customer}\n")
    result = _run(
        parity_repo[0],
        "--views",
        "last_payment",
        "--entities",
        str(entities),
        "--as-of",
        as_of.isoformat(),
        "--json",
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["views"][0]["total"]["counts"]
    assert counts["missing_online"] == 0 and counts["ttl_expired"] == 2
