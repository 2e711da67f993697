"""Freshness: a breach is detected (offline and online), a fresh view passes, gauges are exported."""

from __future__ import annotations

import json
from datetime import timedelta

from prometheus_client import generate_latest

from fs_platform.cli.main import main
from fs_platform.governance import offline
from fs_platform.governance.freshness import check_freshness, check_view
from fs_platform.observability import REGISTRY


def test_fresh_view_passes_and_stale_view_breaches(gov):
    newest = offline.newest_event_time(gov.store, "merchant_risk_daily")
    expected = gov.data.merchant_risk_daily["event_timestamp"].max().to_pydatetime()
    assert abs((newest - expected).total_seconds()) < 0.001  # Delta stats are millisecond-precise

    fresh = check_view(gov.store, "merchant_risk_daily", now=newest + timedelta(hours=1))
    assert not fresh.breached and fresh.sla_seconds == 36 * 3600
    assert fresh.online is not None and fresh.online.newest == fresh.offline.newest  # materialized
    stale = check_view(gov.store, "merchant_risk_daily", now=newest + timedelta(hours=37))
    assert stale.offline.breached and stale.online.breached


def test_view_missing_online_breaches_even_when_offline_is_fresh(gov):
    newest = offline.newest_event_time(gov.store, "customer_txn_rolling")
    result = check_view(gov.store, "customer_txn_rolling", now=newest + timedelta(minutes=1))
    assert not result.offline.breached
    assert result.online.newest is None and result.online.breached and result.breached  # never materialized


def test_aggregation_view_is_judged_by_its_newest_raw_event_and_not_online(gov):
    """Its offline values are computed from the raw payments, so their newest event is its offline
    freshness; online, tiles are merged as of each read (no event time to age): not measured."""
    newest = offline.newest_event_time(gov.store, "customer_txn_aggregates")
    expected = gov.data.payments["event_timestamp"].max().to_pydatetime()
    assert abs((newest - expected).total_seconds()) < 0.001  # Delta stats are millisecond-precise
    fresh = check_view(gov.store, "customer_txn_aggregates", now=newest + timedelta(minutes=14))
    assert fresh.sla_seconds == 15 * 60 and not fresh.offline.breached
    assert fresh.online is None and not fresh.breached
    stale = check_view(gov.store, "customer_txn_aggregates", now=newest + timedelta(minutes=16))
    assert stale.offline.breached and stale.breached


def test_report_exports_gauges_and_cli_exits_3_on_breach(gov, capsys):
    report = check_freshness(gov.store)
    assert "customer_txn_rolling" in report.breached
    assert {v.view for v in report.views} >= {
        "customer_profile",
        "customer_txn_aggregates",
        "merchant_risk_daily",
        "merchant_txn_aggregates",
    }
    text = generate_latest(REGISTRY).decode()
    assert 'fs_freshness_breach{store="online",view="customer_txn_rolling"} 1.0' in text
    assert 'fs_freshness_sla_seconds{view="merchant_risk_daily"} 129600.0' in text
    assert 'fs_freshness_age_seconds{store="offline",view="customer_profile"}' in text
    assert 'fs_freshness_age_seconds{store="offline",view="customer_txn_aggregates"}' in text
    assert 'store="online",view="customer_txn_aggregates"' not in text

    repo = str(gov.repo_path)
    assert main(["--repo", repo, "--json", "monitor", "freshness"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert "customer_txn_rolling" in out["breached"]
    assert main(["--repo", repo, "monitor", "freshness", "--view", "customer_profile"]) == 0


def test_cli_writes_the_gauges_as_a_prometheus_textfile(gov, tmp_path):
    prom = tmp_path / "freshness.prom"
    assert (
        main(
            [
                "--repo",
                str(gov.repo_path),
                "monitor",
                "freshness",
                "--view",
                "customer_profile",
                "--prom-file",
                str(prom),
            ]
        )
        == 0
    )
    text = prom.read_text()
    assert 'fs_freshness_age_seconds{store="offline",view="customer_profile"}' in text
    assert 'fs_freshness_breach{store="online",view="customer_profile"} 0.0' in text
