"""Captured logs, metrics, stored results and reports never contain PII values."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from prometheus_client import generate_latest

from fs_platform import datagen
from fs_platform.errors import OnlineAccessDenied
from fs_platform.governance import pii
from fs_platform.governance.drift import detect_drift
from fs_platform.governance.drift_html import render_html
from fs_platform.governance.freshness import check_freshness
from fs_platform.governance.validate import ResultLog, gate
from fs_platform.observability import REGISTRY

MARKERS = ["leak-canary-7f3a.example", "LEAK-CANARY-UPPER.example"]


def test_no_pii_value_reaches_logs_metrics_results_or_reports(gov, caplog):
    caplog.set_level(logging.DEBUG)
    profiles = gov.data.customer_profile
    bad = profiles.head(40).copy()
    bad.loc[bad.index[:2], "email_domain"] = MARKERS  # invalid domains: they become failing samples
    bad.loc[bad.index[2], "country"] = "Narnia"
    strict = gate(gov.store, "customer_profile", datagen.to_arrow(bad), "strict", origin="test")
    warn = gate(gov.store, "customer_profile", bad, "warn", origin="test")
    assert not strict.passed and not warn.passed
    end = datagen.default_end() + timedelta(seconds=1)
    report = detect_drift(
        gov.store,
        "customer_profile",
        (end - timedelta(days=6), end - timedelta(days=3)),
        (end - timedelta(days=3), end),
    )
    check_freshness(gov.store)
    with pytest.raises(OnlineAccessDenied):
        pii.get_online_features(gov.store, ["customer_profile:email_domain"], [{"customer_id": 1}])
    pii.get_online_features(
        gov.store, ["customer_profile:email_domain"], [{"customer_id": 1}], roles=[pii.PII_READER]
    )

    secrets = set(MARKERS) | {"Narnia"} | set(profiles["email_domain"])
    surfaces = {
        "logs": caplog.text,
        "metrics": generate_latest(REGISTRY).decode(),
        "results": ResultLog(gov.repo_path).path.read_text(),
        "summaries": strict.summary() + warn.summary(),
        "drift html": render_html(report),
    }
    assert len(surfaces["results"]) > 0 and "masked:" in surfaces["results"]
    leaks = {(where, s) for where, text in surfaces.items() for s in secrets if s in text}
    assert not leaks
