"""Drift: shifted data is flagged, a same-distribution sample is not; the HTML report masks PII."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from deltalake import write_deltalake

from fs_platform import datagen
from fs_platform.cli.main import main
from fs_platform.errors import RepoError
from fs_platform.governance.drift import detect_drift, psi, thresholds_for
from fs_platform.governance.drift_html import render_html

SHIFT = timedelta(days=300)  # copies go far in the past, outside every other test's window
VIEW = "customer_txn_rolling"  # a plain view with a row per payment (tests/rolling_view.py)
AMOUNTS = {"txn_amount_1h", "txn_amount_24h"}


@pytest.fixture(scope="module")
def windows(gov):
    """Reference = the last 3 days; two past windows hold a resample and a shifted copy of it."""
    end = datagen.default_end() + timedelta(seconds=1)
    ref = (end - timedelta(days=3), end)
    rng = np.random.default_rng(3)
    rolling = gov.rolling  # customer_txn_rolling: a row per payment (tests/rolling_view.py)
    recent = rolling[rolling["event_timestamp"] >= datagen.pd.Timestamp(ref[0])]
    same = recent.sample(n=len(recent), replace=True, random_state=5)
    shifted = recent.copy()
    shifted["txn_amount_1h"] = shifted["txn_amount_1h"] * 1.6
    shifted["txn_amount_24h"] = shifted["txn_amount_24h"] * 1.6
    profiles = gov.data.customer_profile
    profile_shift = profiles.copy()
    profile_shift["country"] = np.where(rng.uniform(size=len(profiles)) < 0.7, "NG", profile_shift["country"])
    for frame, table, offset in (
        (same, VIEW, SHIFT),
        (shifted, VIEW, 2 * SHIFT),
        (profile_shift, "customer_profile", SHIFT),
    ):
        moved = frame.assign(
            event_timestamp=frame["event_timestamp"] - offset, created_at=frame["created_at"] - offset
        )
        write_deltalake(str(gov.repo_path / "data" / table), datagen.to_arrow(moved), mode="append")
    return {
        "ref": ref,
        "same": (ref[0] - SHIFT, ref[1] - SHIFT),
        "shifted": (ref[0] - 2 * SHIFT, ref[1] - 2 * SHIFT),
    }


def test_same_distribution_sample_does_not_drift(gov, windows):
    report = detect_drift(gov.store, VIEW, windows["ref"], windows["same"])
    assert report.drifted == []
    assert all(f.psi < 0.05 and f.ks < 0.05 for f in report.features)


def test_shifted_numeric_features_drift_and_the_rest_do_not(gov, windows):
    report = detect_drift(gov.store, VIEW, windows["ref"], windows["shifted"])
    assert set(report.drifted) == AMOUNTS
    amount = next(f for f in report.features if f.feature == "txn_amount_24h")
    assert amount.psi > 0.2 and amount.ks > 0.1 and len(amount.histogram.labels) == 10


def test_categorical_pii_drift_is_detected_and_masked_in_the_report(gov, windows, tmp_path):
    profiles = gov.data.customer_profile
    ref = (
        profiles["event_timestamp"].min().to_pydatetime(),
        profiles["event_timestamp"].max().to_pydatetime() + timedelta(seconds=1),
    )
    report = detect_drift(gov.store, "customer_profile", ref, (ref[0] - SHIFT, ref[1] - SHIFT))
    country = next(f for f in report.features if f.feature == "country")
    assert country.kind == "categorical" and country.drifted and country.ks is None and country.pii
    assert all(lab.startswith("masked:") or lab == "(other)" for lab in country.histogram.labels)
    html = render_html(report)
    assert "<svg" in html and "country (PII, masked)" in html
    for value in set(profiles["country"]) | set(profiles["email_domain"]):
        assert f">{value}<" not in html and f"{value} reference" not in html


def test_thresholds_come_from_the_suite_with_per_feature_overrides(gov):
    config = {"psi": 0.2, "ks": 0.15, "features": {"txn_volume_1d": {"psi": 0.25}}}
    assert thresholds_for(config, "txn_volume_1d") == {"psi": 0.25, "ks": 0.15, "bins": 10}
    assert thresholds_for({}, "x") == {"psi": 0.2, "ks": 0.1, "bins": 10}
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0


def test_cli_drift_exit_code_and_html(gov, windows, tmp_path, capsys):
    repo = str(gov.repo_path)
    fmt = "{}..{}".format
    html = tmp_path / "drift.html"
    reference = fmt(*(t.isoformat() for t in windows["ref"]))
    args = ["--repo", repo, "--json", "monitor", "drift", VIEW, "--reference", reference]
    assert (
        main([*args, "--current", fmt(*(t.isoformat() for t in windows["shifted"])), "--html", str(html)])
        == 3
    )
    assert set(json.loads(capsys.readouterr().out)["drifted"]) == AMOUNTS
    assert html.read_text().count("<svg") == 4  # one histogram per feature
    assert main([*args, "--current", fmt(*(t.isoformat() for t in windows["same"]))]) == 0
    capsys.readouterr()
    bad = ["--repo", repo, "monitor", "drift", VIEW, "--reference", "-1d", "--current", "-1d..now"]
    assert main(bad) == 2


def test_an_aggregation_view_has_no_stored_rows_to_compare(gov, capsys):
    """Its source table holds raw payments, not feature values: drift over it is refused, in one line."""
    end = datagen.default_end()
    window = (end - timedelta(days=2), end)
    with pytest.raises(RepoError, match="'customer_txn_aggregates' is an aggregation view"):
        detect_drift(gov.store, "customer_txn_aggregates", window, window)
    assert (
        main(
            [
                "--repo",
                str(gov.repo_path),
                "monitor",
                "drift",
                "customer_txn_aggregates",
                "--reference",
                "-6d..-3d",
                "--current",
                "-3d..now",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "is an aggregation view" in err and len(err.strip().splitlines()) == 1
