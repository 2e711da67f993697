"""The repo's Great Expectations suites gate materialization: strict rejects, warn records."""

from datetime import timedelta

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from fs_platform import datagen
from fs_platform.errors import BackfillError
from tests.backfill.conftest import END

pytestmark = [pytest.mark.redis]


def _corrupt(repo, view: str, column: str, value, days: int = 1) -> pd.Timestamp:
    """Set ``column`` to ``value`` on every row of the last ``days`` days of ``view``'s table."""
    path = str(repo / "data" / view)
    df = DeltaTable(path).to_pandas()
    cutoff = pd.Timestamp(END - timedelta(days=days))
    df.loc[df["event_timestamp"] >= cutoff, column] = value
    write_deltalake(path, datagen.to_arrow(df), mode="overwrite")
    return cutoff


def _online(platform, feature: str, key: str, ids) -> list:
    return platform.store.get_online_features(
        features=[feature], entity_rows=[{key: i} for i in ids]
    ).to_dict()[feature.split(":")[1]]


def test_strict_suite_rejects_a_bad_chunk_and_keeps_it_offline_only(make_repo):
    platform = make_repo("strict")
    _corrupt(platform.repo_path, "merchant_risk_daily", "approval_rate_1d", 1.7)  # rates are <= 1
    start = END - timedelta(days=2)
    with pytest.raises(BackfillError, match="rejected: expectations: merchant_risk_daily: rejected"):
        platform.materialize(start, END, views=["merchant_risk_daily"])
    values = _online(platform, "merchant_risk_daily:approval_rate_1d", "merchant_id", range(1, 16))
    assert 1.7 not in values
    # the failure is recorded and listable
    from fs_platform.governance.validate import ResultLog

    rejected = ResultLog(platform.repo_path).list("merchant_risk_daily", failed_only=True)
    assert any(r.outcome == "rejected" and r.origin == "materialize" for r in rejected)


def test_warn_suite_writes_and_records(make_repo):
    platform = make_repo("warn")
    # customer_profile's suite gates in warn mode: an unknown KYC level is written but recorded
    _corrupt(platform.repo_path, "customer_profile", "kyc_level", 9, days=5)
    platform.materialize(END - timedelta(days=4), END, views=["customer_profile"])
    from fs_platform.governance.validate import ResultLog

    warned = ResultLog(platform.repo_path).list("customer_profile", failed_only=True)
    assert any(r.outcome == "warned" and r.origin == "materialize" for r in warned)
    assert 9 in _online(platform, "customer_profile:kyc_level", "customer_id", range(1, 151))
