"""Replay parity: a stream path vs a batch path over the same events. The generic machinery runs on small
test paths (no servers); an aggregation view of the example repo replays through its real tile script
(Redis) and Spark."""

from __future__ import annotations

import pandas as pd
import pytest
from feast.value_type import ValueType as V

from fs_platform import datagen
from fs_platform.parity.replay import replay, replay_view
from fs_platform.parity.replay_paths import stream_path

FEATURES = {"txn_count": V.INT64, "amount_total": V.DOUBLE}


@pytest.fixture(scope="module")
def events():
    return datagen.generate(seed=5, customers=150, merchants=15, days=2).payments


def batch_totals(events: pd.DataFrame) -> pd.DataFrame:
    """Per payment: the customer's count and total amount so far (the batch path)."""
    ordered = events.sort_values("event_timestamp", kind="stable")
    out = ordered[["customer_id", "event_timestamp"]].copy()
    out["txn_count"] = ordered.groupby("customer_id").cumcount() + 1
    out["amount_total"] = ordered.groupby("customer_id")["amount"].cumsum()
    return out


class Totals:
    """The same running totals as a stateful stream hook (one instance per partition)."""

    def __init__(self):
        self.count, self.total = {}, {}

    def __call__(self, record):
        c = record["customer_id"]
        self.count[c] = self.count.get(c, 0) + 1
        self.total[c] = self.total.get(c, 0.0) + record["amount"]
        return {
            "customer_id": c,
            "event_timestamp": record["event_timestamp"],
            "txn_count": self.count[c],
            "amount_total": self.total[c],
        }


class _CountsTwiceSometimes(Totals):
    """A plausible bug: a redelivered event (every 40th) is counted again."""

    seen = 0

    def __call__(self, record):
        _CountsTwiceSometimes.seen += 1
        if _CountsTwiceSometimes.seen % 40 == 0:
            super().__call__(record)
        return super().__call__(record)


class _DropsEvents(Totals):
    """A transformation that silently drops every 50th event."""

    seen = 0

    def __call__(self, record):
        _DropsEvents.seen += 1
        return None if _DropsEvents.seen % 50 == 0 else super().__call__(record)


def _replay(events, hook, **kw):
    return replay(
        events,
        stream=stream_path(hook),
        batch=batch_totals,
        view="totals",
        keys=["customer_id"],
        features=FEATURES,
        **kw,
    )


def test_equal_paths_match(events):
    report = _replay(events, Totals)
    assert report.verdict == "ok" and report.stream_rows == report.batch_rows > 0
    assert all(f.matched == f.compared > 0 for f in report.features)


def test_a_logic_difference_is_value_mismatch(events):
    _CountsTwiceSometimes.seen = 0
    report = _replay(events, _CountsTwiceSometimes)
    by_feature = {f.feature: f for f in report.features}
    assert by_feature["txn_count"].value_mismatch >= 1 and by_feature["amount_total"].value_mismatch >= 1
    assert report.verdict == "breach"
    assert any(e.feature == "txn_count" and e.outcome == "value_mismatch" for e in report.examples)


def test_dropped_events_show_as_batch_only_rows(events):
    _DropsEvents.seen = 0
    report = _replay(events, _DropsEvents)
    assert report.batch_only > 0 and report.stream_only == 0 and report.verdict == "breach"


def test_keys_of_a_pii_entity_are_masked_in_replay_examples(events):
    from fs_platform.governance.pii import mask

    _DropsEvents.seen = 0
    report = _replay(events, _DropsEvents, masked_keys=["customer_id"])
    assert report.examples
    keys = {e.entity["customer_id"] for e in report.examples}
    assert all(isinstance(k, str) and k.startswith("masked:") for k in keys)
    assert keys <= {mask(int(c)) for c in events["customer_id"].unique()}


@pytest.mark.redis
def test_an_aggregation_view_replays_through_its_tile_script_and_spark(parity_repo):
    """The real tile script (scratch namespace) and Spark agree as of every event, and the scratch
    namespace is gone afterwards."""
    import redis

    from fs_platform.platform import Platform

    before = set(redis.Redis.from_url("redis://127.0.0.1:6379/0").scan_iter(match="*replay*"))
    report = replay_view(Platform(parity_repo[0]), "customer_txn_aggregates", customers=40, days=1, seed=3)
    assert report.stream_path.startswith("tiles.lua")
    assert report.stream_rows == report.batch_rows > 0 and report.stream_only == report.batch_only == 0
    assert report.verdict == "ok", report.to_dict()
    assert all(f.compared > 0 for f in report.features)
    assert set(redis.Redis.from_url("redis://127.0.0.1:6379/0").scan_iter(match="*replay*")) == before
