"""One lookup of feature views by name (``fs_platform.views``): every entry point raises the same error."""

from __future__ import annotations

import pytest

from fs_platform.backfill.runner import Backfiller
from fs_platform.errors import RepoError, ViewNotFoundError
from fs_platform.governance.catalog import build_catalog
from fs_platform.governance.freshness import check_view
from fs_platform.governance.validate import validate_offline
from fs_platform.parity.replay import replay_view
from fs_platform.views import feature_view, feature_views

KNOWN = (
    "known: customer_amount_stats, customer_merchant_spread, customer_profile, customer_txn_aggregates, "
    "customer_txn_rolling, merchant_risk_daily, merchant_txn_aggregates"
)


def test_an_unknown_view_is_the_same_one_line_error_everywhere(gov):
    assert feature_view(gov.store, "customer_profile").name == gov.feature_view("customer_profile").name
    assert [v.name for v in feature_views(gov.store, ["merchant_risk_daily", "customer_profile"])] == [
        "merchant_risk_daily",
        "customer_profile",
    ]
    calls = {
        "fs.views": lambda: feature_view(gov.store, "nope"),
        "Platform.feature_view": lambda: gov.feature_view("nope"),
        "backfill plan": lambda: Backfiller(gov).plan("nope", "2026-11-01", "2026-11-02", to="online"),
        "validate": lambda: validate_offline(gov.store, "nope"),
        "freshness": lambda: check_view(gov.store, "nope"),
        "parity replay": lambda: replay_view(gov, "nope"),
        "catalog": lambda: build_catalog(gov.store).view("nope"),
    }
    for where, call in calls.items():
        with pytest.raises(ViewNotFoundError) as err:
            call()
        message = str(err.value)
        assert isinstance(err.value, RepoError) and "\n" not in message, where
        assert message.startswith("unknown feature view 'nope'"), (where, message)
        if where != "catalog":  # the catalog also lists on-demand views
            assert message.endswith(KNOWN), (where, message)


def test_several_unknown_names_on_demand_views_and_online_only_lookups(gov):
    with pytest.raises(
        ViewNotFoundError, match=r"unknown feature views 'a', 'b' — known: customer_amount_stats"
    ):
        feature_views(gov.store, ["customer_profile", "a", "b"])
    with pytest.raises(ViewNotFoundError, match="'txn_amount_vs_history' is an on-demand feature view"):
        feature_view(gov.store, "txn_amount_vs_history")
    with pytest.raises(
        ViewNotFoundError, match="unknown online feature view 'nope' — known: customer_amount_stats"
    ):
        gov.materialize("-1d", "now", views=["nope"])
