"""`fs plan` / `Platform.plan`: nothing to report right after an apply, real changes when there are."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fs_platform import datagen
from fs_platform.platform import Platform

pytestmark = pytest.mark.redis  # the example repo's online store is an embedded Valkey


def test_plan_after_apply_reports_nothing_then_a_real_edit(example_repo):
    datagen.write_tables(datagen.generate(seed=1, customers=20, merchants=5, days=1), example_repo / "data")
    platform = Platform(example_repo)
    first = platform.plan()
    assert {c.action for c in first.changes} == {"create"}
    platform.apply()
    assert Platform(example_repo).plan().changes == []
    # A materialization re-saves the views with the registry's timestamps on their sources; those
    # timestamps differ from a freshly parsed repo's, and that is not a change.
    end = datagen.default_end()
    platform.materialize(end - timedelta(hours=6), end, chunk=timedelta(hours=6))
    assert Platform(example_repo).plan().changes == []

    features = example_repo / "features.py"
    text = features.read_text()
    old = "Daily merchant risk statistics (chargebacks, approvals, volume)."
    assert old in text
    features.write_text(text.replace(old, "Daily merchant risk statistics, revised."))
    [change] = Platform(example_repo).plan().changes
    assert (change.action, change.name) == ("update", "merchant_risk_daily")
    assert any("revised" in d for d in change.details)
