"""Replay parity: stream transformation vs batch definition over the same events (no servers)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from feast.value_type import ValueType as V

from fs import datagen
from parity.replay import replay, replay_view, stream_path
from parity.stream_reference import CustomerTxnAggregates

FEATURES = {
    "txn_count_10m": V.INT64, "txn_count_1h": V.INT64, "txn_count_24h": V.INT64, "txn_amount_10m": V.DOUBLE,
    "txn_amount_1h": V.DOUBLE, "txn_amount_24h": V.DOUBLE, "avg_amount_24h": V.DOUBLE,
}  # fmt: skip
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def events():
    return datagen.generate(seed=5, customers=150, merchants=15, days=2).payments


def _replay(events, hook):
    return replay(events, stream=stream_path(hook), batch=datagen.customer_aggregates, view="customer_txn_aggregates",
                  keys=["customer_id"], features=FEATURES)  # fmt: skip


def test_reference_stream_matches_batch_definition(events):
    report = _replay(events, CustomerTxnAggregates)
    assert report.verdict == "ok" and report.stream_rows == report.batch_rows > 0
    assert all(f.matched == f.compared > 0 for f in report.features)


class _ClosedHour(CustomerTxnAggregates):
    """A plausible bug: the 1h window is [t - 1h, t], so it also counts an event exactly one hour old."""

    def __call__(self, record):
        row = super().__call__(record)
        ts = record["event_timestamp"]
        row["txn_count_1h"] += sum(1 for t, _ in self._recent[row["customer_id"]] if t == ts - HOUR)
        return row


class _DropsEvents(CustomerTxnAggregates):
    """A transformation that silently drops every 50th event."""

    seen = 0

    def __call__(self, record):
        _DropsEvents.seen += 1
        return None if _DropsEvents.seen % 50 == 0 else super().__call__(record)


def test_changed_window_is_value_mismatch(events):
    shifted = events.copy()
    # Events exactly one hour apart for one customer, so the boundary matters.
    first = shifted.index[0]
    shifted.loc[first + 1, "customer_id"] = shifted.loc[first, "customer_id"]
    shifted.loc[first + 1, "event_timestamp"] = shifted.loc[first, "event_timestamp"] + HOUR
    report = _replay(shifted, _ClosedHour)
    by_feature = {f.feature: f for f in report.features}
    assert by_feature["txn_count_1h"].value_mismatch >= 1 and by_feature["txn_count_24h"].value_mismatch == 0
    assert report.verdict == "breach"
    assert any(e.feature == "txn_count_1h" and e.outcome == "value_mismatch" for e in report.examples)


def test_dropped_events_show_as_batch_only_rows(events):
    report = _replay(events, _DropsEvents)
    assert report.batch_only > 0 and report.stream_only == 0 and report.verdict == "breach"


def test_keys_of_a_pii_entity_are_masked_in_replay_examples(events):
    from fs.governance.pii import mask

    _DropsEvents.seen = 0
    report = replay(events, stream=stream_path(_DropsEvents), batch=datagen.customer_aggregates,
                    view="customer_txn_aggregates", keys=["customer_id"], features=FEATURES,
                    masked_keys=["customer_id"])  # fmt: skip
    assert report.examples
    keys = {e.entity["customer_id"] for e in report.examples}
    assert all(isinstance(k, str) and k.startswith("masked:") for k in keys)
    assert keys <= {mask(int(c)) for c in events["customer_id"].unique()}


def test_replay_view_uses_the_repos_ingest_transformation(parity_repo):
    from fs.platform import Platform

    report = replay_view(Platform(parity_repo[0]), "customer_txn_aggregates", customers=60, days=1, seed=3)
    assert report.stream_path.startswith("ingest.yaml topic payments")
    assert report.stream_rows == report.batch_rows > 0 and report.stream_only == report.batch_only == 0
