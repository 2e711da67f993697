"""Every user-facing error of the Python API is an ``FsError`` with the line the CLI prints (issue
#21.9): ``Platform``, its Feast store (``Platform.store``: an unknown feature raised a bare KeyError),
and the backfill API. Seeded example repo (real Delta tables), the machine's Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from fs_platform.backfill.runner import Backfiller
from fs_platform.cli.main import main
from fs_platform.errors import (
    FsError,
    InvalidArgument,
    OnlineWriteError,
    RepoError,
    UnknownFeatureError,
    ViewNotFoundError,
)
from fs_platform.platform import Platform

pytestmark = pytest.mark.redis

VIEW = "merchant_risk_daily"
KNOWN = (
    "chargeback_rate_30d, approval_rate_1d, txn_volume_1d, txn_amount_1d, avg_ticket_1d, "
    "distinct_customers_1d"
)


def _entities() -> pd.DataFrame:
    return pd.DataFrame({"merchant_id": [1], "event_timestamp": [datetime.now(UTC)]})


def test_an_unknown_feature_of_a_known_view_is_an_fs_error_online_and_offline(seeded_repo):
    store = Platform(seeded_repo).store
    expected = f"feature view {VIEW!r} has no feature(s) nope — known: {KNOWN}"
    with pytest.raises(UnknownFeatureError) as online:
        store.get_online_features(features=[f"{VIEW}:nope"], entity_rows=[{"merchant_id": 1}])
    with pytest.raises(UnknownFeatureError) as offline:
        store.get_historical_features(
            entity_df=_entities(), features=[f"{VIEW}:approval_rate_1d", f"{VIEW}:nope"]
        )
    for err in (online.value, offline.value):
        assert isinstance(err, FsError) and isinstance(err, KeyError)  # old `except KeyError` still works
        assert str(err) == expected


def test_an_unknown_view_in_a_feature_reference_is_view_not_found(seeded_repo):
    store = Platform(seeded_repo).store
    with pytest.raises(
        ViewNotFoundError, match=r"unknown feature view 'nope' — known: .*merchant_risk_daily"
    ):
        store.get_online_features(features=["nope:x"], entity_rows=[{"merchant_id": 1}])
    with pytest.raises(ViewNotFoundError, match="unknown feature view 'nope'"):
        store.get_historical_features(entity_df=_entities(), features=["nope:x"])


def test_store_writes_name_an_unknown_view_or_push_source_and_missing_columns(seeded_repo):
    store = Platform(seeded_repo).store
    rows = _entities().assign(approval_rate_1d=[0.5])
    with pytest.raises(ViewNotFoundError, match="unknown feature view 'nope'"):
        store.write_to_online_store("nope", rows)  # Feast: KeyError('nope')
    with pytest.raises(ViewNotFoundError, match="unknown feature view 'nope'"):
        store.write_to_offline_store("nope", rows)
    with pytest.raises(RepoError, match="unknown push source 'nope' — known: payments_push"):
        store.push("nope", rows)
    with pytest.raises(OnlineWriteError) as missing:  # Feast: KeyError "[...] not in index"
        store.write_to_online_store(VIEW, rows)
    assert str(missing.value).startswith(
        f"rows for feature view {VIEW!r} lack column(s) chargeback_rate_30d, txn_volume_1d, txn_amount_1d"
    )


def test_good_references_still_read(seeded_repo):
    store = Platform(seeded_repo).store
    online = store.get_online_features(
        features=[f"{VIEW}:approval_rate_1d"], entity_rows=[{"merchant_id": 1}]
    )
    assert list(online.to_dict()) == ["merchant_id", "approval_rate_1d"]


@pytest.mark.parametrize(
    ("call", "argv", "kind"),
    [
        (lambda p: p.materialize("2026-13-45", "now"), ["materialize", "2026-13-45", "now"], InvalidArgument),
        (
            lambda p: p.materialize("-1d", "now", views=["nope"]),
            ["materialize", "-1d", "now", "--views", "nope"],
            ViewNotFoundError,
        ),
        (lambda p: p.materialize_incremental("soon"), ["materialize-incremental", "soon"], InvalidArgument),
        (
            lambda p: Backfiller(p).plan(VIEW, "2026-13-45", "now", to="online"),
            ["backfill", VIEW, "--start", "2026-13-45", "--end", "now", "--to", "online"],
            InvalidArgument,
        ),
        (
            lambda p: Backfiller(p).plan("nope", "-1d", "now", to="online"),
            ["backfill", "nope", "--start", "-1d", "--end", "now", "--to", "online"],
            ViewNotFoundError,
        ),
        (
            lambda p: Backfiller(p).plan(VIEW, "now", "-1d", to="online"),
            ["backfill", VIEW, "--start", "now", "--end", "-1d", "--to", "online"],
            InvalidArgument,
        ),
        (
            lambda p: Backfiller(p).plan(VIEW, "-1d", "now", to="sideways"),
            ["backfill", VIEW, "--start", "-1d", "--end", "now", "--to", "sideways"],
            InvalidArgument,
        ),
        (lambda p: Backfiller(p).status("nope"), ["backfill", "status", "nope"], ViewNotFoundError),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_platform_and_backfill_api_errors_are_the_cli_line(seeded_repo, capsys, call, argv, kind):
    with pytest.raises(kind) as api:
        call(Platform(seeded_repo))
    assert isinstance(api.value, FsError)
    assert main(["--repo", str(seeded_repo), *argv]) in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    # The same line, but for "now" (the CLI resolves it a moment later) and the argument's name (the
    # CLI names the option, --start, the API the parameter, start).
    strip = lambda s: " ".join(w.removeprefix("--") for w in s.split() if not w[:4].isdigit())  # noqa: E731
    assert len(err) == 1 and strip(err[0]) == strip(f"error: {api.value}")
