"""Produce -> ingest -> online and offline reads, on a real tansu broker, Redis and Delta."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from plugins.kafka_ingest import Ingestor
from plugins.kafka_ingest.deadletter import read_dead_letters
from tests.plugins.kafka_ingest.conftest import Running, assert_exactly_once, payments, produce

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def test_events_reach_online_and_offline_exactly_once_and_bad_ones_are_dead_lettered(stream_repo):
    events = payments(400)
    future = dict(events[0], payment_id=9999, event_timestamp=(datetime.now(UTC) + timedelta(hours=2)).isoformat())
    bad = [b"\xff\xfe not json", json.dumps({"customer_id": 1}).encode(),
           json.dumps(dict(events[0], amount="12.50")).encode(), json.dumps(future).encode(),
           json.dumps(dict(events[0], event_timestamp="yesterday")).encode()]
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events, raw=bad)
    stream_repo.configure(http_port=0)

    ingestor = Ingestor(stream_repo.platform, stream_repo.config())
    run = Running(ingestor)
    run.wait(lambda s: s.consumed == len(events) + len(bad) and s.written_offline == len(events), what="ingestion")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{ingestor.http_port}/metrics").read().decode()
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ingestor.http_port}/health").read())
    stats = run.stop()

    assert health["status"] == "ok" and health["assigned_partitions"] == 2
    assert "fs_ingest_consumed_records_total" in metrics and "fs_ingest_freshness_seconds_bucket" in metrics
    assert dict(stats.dead_lettered) == {"undecodable": 1, "missing_field": 1, "wrong_type": 1,
                                         "future_timestamp": 1, "bad_timestamp": 1}
    assert stats.written_online + stats.skipped_stale == len(events)
    assert_exactly_once(stream_repo, events)
    assert stream_repo.committed() and sum(stream_repo.committed().values()) == len(events) + len(bad)

    letters = read_dead_letters(f"{stream_repo.topic}.dlq", bootstrap_servers=stream_repo.broker.bootstrap)
    assert sorted(d.reason for d in letters) == sorted(stats.dead_lettered)
    assert {d.value for d in letters} == set(bad)  # the original bytes
    assert all(d.topic == stream_repo.topic and d.offset >= 0 for d in letters)
    assert not any("12.50" in d.detail for d in letters)  # details name fields, never values

    # The offline store serves the streamed rows point-in-time.
    entity_df = pd.DataFrame({"customer_id": [e["customer_id"] for e in events[-5:]],
                              "event_timestamp": [pd.Timestamp(e["event_timestamp"]) for e in events[-5:]]})
    hist = stream_repo.platform.store.get_historical_features(
        entity_df=entity_df, features=["customer_txn_aggregates:txn_count_24h"]).to_df()
    assert hist["txn_count_24h"].notna().all()


def test_restart_replays_nothing_twice_and_keeps_aggregates_warm(stream_repo):
    first = payments(150, seed=1, start=datetime.now(UTC) - timedelta(hours=2))
    produce(stream_repo.broker.bootstrap, stream_repo.topic, first)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_offline == len(first), what="first run")
    run.stop()

    start = datetime.fromisoformat(first[-1]["event_timestamp"]) + timedelta(seconds=1)
    second = payments(150, seed=2, start=start, first_id=1000)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, second)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_offline == len(second), what="second run")
    import gc

    assert gc.get_freeze_count() > 0  # a running ingestor keeps its start-up heap out of the GC ...
    stats = run.stop()
    assert gc.get_freeze_count() == 0  # ... and gives it back when it stops (a notebook's heap)
    assert stats.consumed == len(second)  # the warm-up replay is not counted as consumption
    assert_exactly_once(stream_repo, first + second)


def _rewind_group(repo) -> None:
    """Commit offset 0 for the group (no member running): the next run redelivers everything."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=repo.broker.bootstrap, group_id=repo.group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(repo.topic, p) for p in (0, 1)]
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
    finally:
        consumer.close(autocommit=False)
    assert repo.committed() == {0: 0, 1: 0}


def test_a_redelivered_record_is_the_same_row_online_and_offline(stream_repo):
    """Rows carry their Kafka record's timestamp as created time, so a full redelivery writes nothing:
    online every row is an equal (event, created) row (skipped), offline every offset is recorded."""
    events = payments(200, seed=3, start=datetime.now(UTC) - timedelta(hours=1))
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_offline == len(events), what="first run")
    first = run.stop()
    assert first.written_online > 0
    online_before = stream_repo.online(sorted({e["customer_id"] for e in events}))

    _rewind_group(stream_repo)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.consumed == len(events) and s.skipped_duplicate == len(events), what="redelivery")
    again = run.stop()

    assert again.written_online == 0 and again.written_offline == 0
    assert again.skipped_stale == len(events)
    assert_exactly_once(stream_repo, events)
    assert stream_repo.online(sorted({e["customer_id"] for e in events})).equals(online_before)
    # Offline created times are the records' Kafka timestamps (the ones online rows carry too).
    stamps = {(k, pd.Timestamp(t)): ms for k, t, ms in _record_times(stream_repo, len(events))}
    rows = stream_repo.delta_rows()
    got = {(k, t): c for k, t, c in zip(rows["customer_id"], rows["event_timestamp"], rows["created_at"], strict=True)}
    assert got == {key: pd.Timestamp(ms, unit="ms", tz="UTC") for key, ms in stamps.items()}


def _record_times(repo, n: int) -> list[tuple]:
    """(customer_id, event time, Kafka timestamp ms) of the topic's first ``n`` records."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=repo.broker.bootstrap, enable_auto_commit=False)
    out, deadline = [], time.monotonic() + 60
    try:
        consumer.assign([TopicPartition(repo.topic, p) for p in (0, 1)])
        consumer.seek_to_beginning()
        while len(out) < n:
            assert time.monotonic() < deadline, f"read {len(out)} of {n} records"
            for records in consumer.poll(timeout_ms=1000).values():
                for r in records:
                    e = json.loads(r.value)
                    out.append((e["customer_id"], e["event_timestamp"], r.timestamp))
    finally:
        consumer.close(autocommit=False)
    return out
