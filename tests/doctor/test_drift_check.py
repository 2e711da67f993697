"""``fs doctor --deep``'s drift check: a tier-1 view's last day of offline rows against the week before, on
real Delta tables (the example repo's ``merchant_risk_daily``, tier 1)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from fs_platform.doctor import Severity, doctor
from fs_platform.doctor.drift_check import MIN_ROWS
from tests.backfill.conftest import make_repo  # noqa: F401 - the fixture

pytestmark = pytest.mark.redis

VIEW = "merchant_risk_daily"


def _append_last_day(platform, rows: int, shift: float, seed: int = 3) -> None:
    """``rows`` rows in the hour before the newest event, resampled from the table's older rows (the same
    distribution), with ``avg_ticket_1d`` multiplied by ``shift``."""
    location = str(platform.repo_path / "data" / VIEW)
    table = DeltaTable(location).to_pyarrow_table()
    newest = max(table.column("event_timestamp").to_pylist())
    older = table.filter(
        pa.compute.less(
            table["event_timestamp"],
            pa.scalar(newest - timedelta(days=1), table.schema.field("event_timestamp").type),
        )
    )
    rng = np.random.default_rng(seed)
    picked = older.take(pa.array(rng.integers(0, older.num_rows, rows))).to_pylist()
    for i, r in enumerate(picked):
        r["event_timestamp"] = r["created_at"] = newest - timedelta(minutes=50) + timedelta(seconds=i)
        r["avg_ticket_1d"] = r["avg_ticket_1d"] * shift
    write_deltalake(location, pa.Table.from_pylist(picked, schema=table.schema), mode="append")


def _drift(platform):
    report = doctor(platform, [VIEW], checks=["drift"])
    (finding,) = [f for f in report.findings if f.check == "drift" and f.subject == VIEW]
    return finding


def test_too_few_rows_is_no_verdict(make_repo):  # noqa: F811
    finding = _drift(make_repo())  # 15 merchants: 15 rows a day
    assert finding.severity == Severity.INFO and finding.evidence["current_rows"] < MIN_ROWS


def test_same_distribution_is_not_drift(make_repo, monkeypatch):  # noqa: F811
    from fs_platform.governance import offline

    platform = make_repo(days=9)  # a full reference week
    _append_last_day(platform, 1000, shift=1.0)
    real, windows = offline.read_window, []

    def counted(store, name, start=None, end=None):
        windows.append((start, end))
        return real(store, name, start, end)

    monkeypatch.setattr(offline, "read_window", counted)
    finding = _drift(platform)
    assert len(windows) == len(set(windows)) == 2  # the last day and the week before, each read once
    assert finding.severity == Severity.OK, finding.evidence
    assert finding.evidence["drifted"] == [] and "avg_ticket_1d" in finding.evidence["psi"]


def test_shifted_feature_is_found_without_values(make_repo):  # noqa: F811
    platform = make_repo(days=9)
    _append_last_day(platform, 1000, shift=5.0)
    finding = _drift(platform)
    assert finding.severity == Severity.WARNING
    assert finding.evidence["drifted"] == ["avg_ticket_1d"]
    assert "fs monitor drift merchant_risk_daily --reference" in finding.message
    assert not finding.actions  # a person decides whether the world or the pipeline changed
    # the deep run includes it; the default run does not (it reads a week of offline rows)
    assert "drift" in doctor(platform, [VIEW], deep=True).checks
    assert "drift" not in doctor(platform, [VIEW]).checks
