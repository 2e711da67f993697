"""Aggregation views through the backfill runner: `fs materialize` and `fs backfill VIEW --to online`
rebuild the Redis tiles from the raw Delta payments with Spark; the values served are then the windows
of the raw events as of the read (docs/aggregations.md), recomputed here directly with pandas; a rebuild
never drops events the stream applied after the Delta events ended. Real Delta, Sail Spark and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fs_platform.backfill.model import Status, Target
from fs_platform.backfill.runner import Backfiller
from tests.backfill.conftest import END, apply_views

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VIEW = "customer_txn_aggregates"
CUSTOMERS = list(range(1, 151))
FEATURES = [f"{VIEW}:{f}" for f in ("txn_count_10m", "txn_count_24h", "txn_amount_24h", "avg_amount_24h")]


def _window(payments: pd.DataFrame, now: datetime, span: timedelta, tile: timedelta) -> pd.DataFrame:
    """The events a window of ``span`` (tiles of ``tile``) counts as of ``now``: [floor(now) - span, now]."""
    floor = pd.Timestamp(now).floor(pd.Timedelta(tile))
    times = payments["event_timestamp"]
    return payments[(times >= floor - pd.Timedelta(span)) & (times <= pd.Timestamp(now))]


def expected(payments: pd.DataFrame, now: datetime) -> dict[str, list]:
    """The view's values per customer as of ``now``, straight from the raw payments."""
    day = _window(payments, now, timedelta(days=1), timedelta(hours=1)).groupby("customer_id")["amount"]
    recent = _window(payments, now, timedelta(minutes=10), timedelta(minutes=1)).groupby("customer_id").size()
    count, amount = day.size(), day.sum()
    return {
        "txn_count_10m": [int(recent.get(c, 0)) for c in CUSTOMERS],
        "txn_count_24h": [int(count.get(c, 0)) for c in CUSTOMERS],
        "txn_amount_24h": [float(amount.get(c, 0.0)) for c in CUSTOMERS],
        "avg_amount_24h": [float(amount[c] / count[c]) if c in count.index else None for c in CUSTOMERS],
    }


def served(platform) -> tuple[dict[str, list], datetime]:
    """The values served now, and the read's instant (retried if a minute boundary passed meanwhile)."""
    while True:
        before = datetime.now(UTC)
        values = platform.store.get_online_features(
            features=FEATURES, entity_rows=[{"customer_id": c} for c in CUSTOMERS]
        ).to_dict()
        if datetime.now(UTC).replace(second=0, microsecond=0) == before.replace(second=0, microsecond=0):
            return values, before


def assert_served_equal(values: dict, want: dict) -> None:
    for name in ("txn_count_10m", "txn_count_24h"):
        assert values[name] == want[name], name
    for name in ("txn_amount_24h", "avg_amount_24h"):  # float64 sums in another order (docs/aggregations.md)
        assert values[name] == [None if w is None else pytest.approx(w, rel=1e-9) for w in want[name]], name


def test_materialize_rebuilds_tiles_that_serve_the_windows_of_the_raw_events(make_repo):
    platform = make_repo()
    payments = platform.data.payments
    bf = Backfiller(platform)
    [result] = bf.materialize([VIEW], END - timedelta(days=2), END, chunk=timedelta(hours=12))
    assert result.ok and sum(c.rows_written for c in result.chunks) > 0
    assert bf.ledger.status(VIEW, Target.ONLINE).watermark == END
    values, now = served(platform)
    want = expected(payments, now)
    assert sum(want["txn_count_24h"]) > 100  # the check is not vacuous
    assert_served_equal(values, want)
    # Other aggregation views of the same events, one with a filtered input (declines).
    [merchants] = bf.materialize(["merchant_txn_aggregates"], END - timedelta(days=2), END)
    assert merchants.ok
    rates = platform.store.get_online_features(
        features=["merchant_txn_aggregates:merchant_decline_rate_24h"],
        entity_rows=[{"merchant_id": m} for m in range(1, 16)],
    ).to_dict()["merchant_decline_rate_24h"]
    day = _window(payments, datetime.now(UTC), timedelta(days=1), timedelta(hours=1))
    declined = (~day["approved"]).groupby(day["merchant_id"]).mean()
    assert rates == [
        pytest.approx(declined[m], rel=1e-9) if m in declined.index else None for m in range(1, 16)
    ]


def test_backfill_to_online_rebuilds_lost_tiles_and_keeps_newer_stream_events(make_repo):
    """Redis lost the tiles: `fs backfill VIEW --to online` rebuilds them. Events the stream applied
    after the Delta events end (here: now) sit in tiles the rebuild has no events for: they stay."""
    platform = make_repo()
    payments = platform.data.payments
    start = END - timedelta(days=2)
    assert Backfiller(platform).materialize([VIEW], start, END, chunk=timedelta(days=1))[0].ok

    # The stream (the Kafka ingestor's write path) applies three fresh payments of customer 1.
    fresh_at = datetime.now(UTC) - timedelta(seconds=1)
    fresh = pa.table(
        {
            "customer_id": pa.array([1, 1, 1], pa.int64()),
            "amount": pa.array([10.0, 20.0, 30.0]),
            "event_timestamp": pa.array([fresh_at] * 3, pa.timestamp("us", "UTC")),
        }
    )
    online_store = platform.store._get_provider().online_store
    view = platform.store.get_feature_view(VIEW)
    applied = online_store.write_events(
        platform.store.config, view, fresh, ["payments/0"] * 3, np.array([1, 2, 3]), "event_timestamp"
    )
    assert applied.applied == 3
    streamed = pd.concat([payments, fresh.to_pandas().assign(payment_id=-1)], ignore_index=True)
    values, now = served(platform)
    assert_served_equal(values, expected(streamed, now))

    platform.teardown()  # Redis lost the view's keys (and the online ledger)
    apply_views(platform)
    assert all(v == 0 for v in served(platform)[0]["txn_count_24h"])
    # The stream re-applies what it had not committed to Kafka when Redis was lost.
    online_store.write_events(
        platform.store.config, view, fresh, ["payments/0"] * 3, np.array([1, 2, 3]), "event_timestamp"
    )
    bf = Backfiller(platform)
    result = bf.run(bf.plan(VIEW, start, END + timedelta(hours=1), to="online", chunk=timedelta(days=1)))
    assert result.ok and {c.target for c in result.chunks} == {Target.ONLINE}
    assert all(e.status == Status.DONE for e in bf.ledger.latest(VIEW, Target.ONLINE))
    values, now = served(platform)
    assert_served_equal(values, expected(streamed, now))  # rebuilt from Delta, fresh events kept
