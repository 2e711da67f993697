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
    stats = run.stop()
    assert stats.consumed == len(second)  # the warm-up replay is not counted as consumption
    assert_exactly_once(stream_repo, first + second)
