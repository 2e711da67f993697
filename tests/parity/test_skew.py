"""`fs parity skew` on real Delta (Sail) + Redis: vectors `fs serve` logged are compared with the offline
store's point-in-time values at their served times. A healthy system reports no skew, an online value
overwritten behind the offline store's back is found, and --by model_version separates two versions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from fs_platform.cli import exit_codes
from fs_platform.cli.main import app as cli
from fs_platform.governance.pii import ONLINE_READER, PSEUDONYMOUS_READER
from fs_platform.parity.skew import skew
from fs_platform.plugins.serving.app import ServeApp
from fs_platform.plugins.serving.settings import ServeSettings
from tests.parity.conftest import changed, newest
from tests.plugins.serving.asgi import request

pytestmark = pytest.mark.redis

KEY = "k-skewtest-0123456789abcdef"
SERVICE = "fraud_core"  # merchant_risk_daily, customer_profile[country (pseudonymous), kyc_level], aggregates


@pytest.fixture
def served(stores, tmp_path, monkeypatch):
    """``fs serve`` over the parity stores, logging every request to a fresh Delta table."""
    monkeypatch.setenv("FS_SKEW_TEST_KEY", KEY)
    path = tmp_path / "served"
    settings = ServeSettings(
        deadline_ms=5000.0,
        auth={
            "mode": "api_key",
            "identities": [
                {
                    "name": "scoring",
                    "key_env": "FS_SKEW_TEST_KEY",
                    "roles": [ONLINE_READER, PSEUDONYMOUS_READER],
                }
            ],
        },
        served_log={"sample": 1.0, "path": str(path), "flush_s": 3600},
    )
    app = ServeApp(stores.store, settings)
    app.warm()
    yield app, str(path)
    app.served_log.close()


def _entities(stores, n: int = 3) -> dict[str, list]:
    customers = stores.data.customer_profile.customer_id.drop_duplicates().head(n).tolist()
    merchants = stores.data.merchant_risk_daily.merchant_id.drop_duplicates().head(n).tolist()
    return {"customer_id": [int(c) for c in customers], "merchant_id": [int(m) for m in merchants]}


def _serve(app, entities, version: str, request_id: str) -> None:
    headers = {
        "X-API-Key": KEY,
        "X-Request-Id": request_id,
        "X-Model-Name": "fraud",
        "X-Model-Version": version,
    }
    status, _, body = request(
        app,
        "POST",
        "/get-online-features",
        {"feature_service": SERVICE, "entities": entities},
        headers=headers,
    )
    assert status == 200, body


def _inject(stores, customer: int) -> int:
    """Overwrite the customer's online kyc_level (a correction the offline store never got); the old value."""
    row = newest(stores.data.customer_profile, "customer_id", customer)
    old = int(row.kyc_level.iloc[0])
    stores.write(
        "customer_profile",
        changed(row, kyc_level=(old + 1) % 4, created_at=row.created_at.iloc[0] + timedelta(seconds=5)),
    )
    return old


def _view(report, name):
    (v,) = [v for v in report.views if v.view == name]
    return v


def _cli(stores, parity_repo, table, *args):
    return CliRunner().invoke(
        cli,
        [
            "--repo",
            str(parity_repo[0]),
            "parity",
            "skew",
            "--feature-service",
            SERVICE,
            "--since",
            "1h",
            "--table",
            table,
            *args,
        ],
    )


def test_a_healthy_system_reports_no_skew(stores, served, parity_repo):
    app, table = served
    entities = _entities(stores)
    for i in range(4):
        _serve(app, entities, "v1", f"r{i}")
    assert app.served_log.flush() == 4 * 3

    report = skew(stores.store, SERVICE, since=timedelta(hours=1), table=table)
    assert report.verdict == "ok" and report.logged_rows == 12 and list(report.groups) == ["all"]
    group = report.groups["all"]
    assert {v.view for v in group.views} == {
        "merchant_risk_daily",
        "customer_profile",
        "customer_txn_aggregates",
    }
    for v in group.views:
        assert v.entities == 12 and v.total().compared > 0, v.view
        assert v.total().mismatched == 0, (v.view, v.total().counts, group.example_lines())
    assert "customer_profile.country" in report.skipped  # pseudonymous: logged hashed, not compared

    result = _cli(stores, parity_repo, table, "--json")
    assert result.exit_code == exit_codes.OK, result.output
    assert json.loads(result.stdout)["verdict"] == "ok"


def test_an_overwritten_online_value_is_found_as_skew(stores, served, parity_repo):
    app, table = served
    entities = _entities(stores)
    victim = entities["customer_id"][1]
    old = _inject(stores, victim)
    for i in range(3):
        _serve(app, entities, "v1", f"r{i}")
    app.served_log.flush()

    report = skew(stores.store, SERVICE, since=timedelta(hours=1), table=table)
    assert report.verdict == "breach"
    profile = _view(report.groups["all"], "customer_profile")
    stats = {f.feature: f for f in profile.features}
    assert stats["kyc_level"].counts["value_mismatch"] == 3  # the victim's row of each request
    assert stats["kyc_level"].breaching == 3 and stats["kyc_level"].compared == 9
    (example,) = [e for e in profile.examples if e.feature == "kyc_level"]
    assert example.entity == {"customer_id": victim}
    assert (example.offline_value, example.online_value) == (old, (old + 1) % 4)
    for v in report.groups["all"].views:
        if v.view != "customer_profile":
            assert v.total().mismatched == 0, (v.view, v.total().counts)

    result = _cli(stores, parity_repo, table)
    assert result.exit_code == exit_codes.BREACH, result.output
    assert f"value_mismatch  customer_profile.kyc_level  customer_id={victim}" in result.output
    assert "BREACH" in result.output


def test_by_model_version_separates_a_healthy_version_from_a_skewed_one(stores, served, parity_repo):
    app, table = served
    entities = _entities(stores)
    for i in range(2):
        _serve(app, entities, "v1", f"shadow-{i}")  # v1 served before the online value went wrong
    victim = entities["customer_id"][0]
    _inject(stores, victim)
    for i in range(2):
        _serve(app, entities, "v2", f"shadow-{i}")  # the same requests mirrored to the shadow model
    app.served_log.flush()

    report = skew(stores.store, SERVICE, since=timedelta(hours=1), table=table, by="model_version")
    assert list(report.groups) == ["v1", "v2"]
    assert report.groups["v1"].verdict == "ok"
    assert report.groups["v2"].breach
    v2 = {f.feature: f for f in _view(report.groups["v2"], "customer_profile").features}
    assert v2["kyc_level"].counts["value_mismatch"] == 2
    pair = report.pair
    assert (pair.a, pair.b, pair.rows) == ("v1", "v2", 2 * 3)
    kyc = next(f for f in pair.features if f.feature == "customer_profile.kyc_level")
    assert kyc.compared == 6 and kyc.mismatched == 2  # the victim's row in both mirrored requests

    result = _cli(stores, parity_repo, table, "--by", "model_version", "--json")
    assert result.exit_code == exit_codes.BREACH, result.output
    payload = json.loads(result.stdout)
    assert payload["groups"]["v1"]["verdict"] == "ok" and payload["groups"]["v2"]["verdict"] == "breach"


def test_an_empty_window_is_no_data_and_a_missing_log_is_one_line(
    stores, served, parity_repo, tmp_path, capsys
):
    from fs_platform.cli.main import main

    app, table = served
    _serve(app, _entities(stores), "v1", "r0")
    app.served_log.flush()
    result = _cli(stores, parity_repo, table, "--until", "-2h")
    assert result.exit_code == exit_codes.NO_DATA, result.output
    assert "no data: no logged rows in the window" in result.output
    args = [
        "--repo",
        str(parity_repo[0]),
        "parity",
        "skew",
        "--feature-service",
        SERVICE,
        "--table",
        str(tmp_path / "nothing-here"),
    ]
    assert main(args) == exit_codes.ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no served-feature log at" in err[0] and "served_log.sample" in err[0]
