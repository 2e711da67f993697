"""Produce -> ingest -> online and offline reads, on a real tansu broker, Redis and Delta.

The example repo's stream path (raw payment events -> aggregation tiles + ``data/payments``), and the
generic transform-hook machinery on the fixture's plain view (``conftest.transform_repo``)."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from fs_platform.plugins.kafka_ingest import Ingestor
from fs_platform.plugins.kafka_ingest.deadletter import read_dead_letters
from tests.plugins.kafka_ingest.conftest import (
    AGGREGATION_VIEWS,
    Running,
    StreamRepo,
    assert_exactly_once,
    assert_rows,
    events_frame,
    payments,
    produce,
    running_counts,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def test_events_reach_online_and_offline_exactly_once_and_bad_ones_are_dead_lettered(stream_repo):
    events = payments(400)
    future = dict(
        events[0], payment_id=9999, event_timestamp=(datetime.now(UTC) + timedelta(hours=2)).isoformat()
    )
    bad = [
        b"\xff\xfe not json",
        json.dumps({"customer_id": 1}).encode(),
        json.dumps(dict(events[0], amount="12.50")).encode(),
        json.dumps(future).encode(),
        json.dumps(dict(events[0], event_timestamp="yesterday")).encode(),
        json.dumps(dict(events[0], customer_id=2**64)).encode(),
        json.dumps(
            dict(events[0], event_timestamp=(datetime.now(UTC) - timedelta(hours=2)).isoformat())
        ).encode(),
    ]
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events, raw=bad)
    stream_repo.configure(http_port=0)

    ingestor = Ingestor(stream_repo.platform, stream_repo.config())
    run = Running(ingestor)
    run.wait(
        lambda s: s.consumed == len(events) + len(bad) and s.written_offline == len(events), what="ingestion"
    )
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{ingestor.http_port}/metrics").read().decode()
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ingestor.http_port}/health").read())
    stats = run.stop()

    assert health["status"] == "ok" and health["assigned_partitions"] == 2
    assert "fs_ingest_consumed_records_total" in metrics and "fs_ingest_freshness_seconds_bucket" in metrics
    assert dict(stats.dead_lettered) == {
        "undecodable": 1,
        "missing_field": 1,
        "wrong_type": 1,
        "future_timestamp": 1,
        "bad_timestamp": 1,
        "bad_number": 1,
        "too_late": 1,
    }
    # Each event applied once to each view's tiles (the example views have no row filter).
    assert stats.written_online == len(AGGREGATION_VIEWS) * len(events) and stats.skipped_stale == 0
    assert_exactly_once(stream_repo, events)
    assert stream_repo.committed() and sum(stream_repo.committed().values()) == len(events) + len(bad)

    letters = read_dead_letters(f"{stream_repo.topic}.dlq", bootstrap_servers=stream_repo.broker.bootstrap)
    assert sorted(d.reason for d in letters) == sorted(stats.dead_lettered)
    assert {d.value for d in letters} == set(bad)  # the original bytes
    assert all(d.topic == stream_repo.topic and d.offset >= 0 for d in letters)
    assert not any("12.50" in d.detail for d in letters)  # details name fields, never values


def test_training_reads_the_streamed_events_point_in_time(stream_repo):
    """The raw events the ingestor appended to Delta are what training aggregates: the values as of
    each entity row equal the reference over the produced events."""
    from fs_platform.aggregation import spec_of
    from tests.aggregation.reference import expected

    events = payments(120, customers=5, seed=9)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_offline == len(events), what="ingestion")
    run.stop()

    rows = events[-8:]
    entity_df = pd.DataFrame(
        {
            "customer_id": [e["customer_id"] for e in rows],
            "event_timestamp": [pd.Timestamp(e["event_timestamp"]) for e in rows],
        }
    )
    features = ["txn_count_10m", "txn_count_24h", "txn_amount_1h", "avg_amount_24h"]
    hist = stream_repo.platform.store.get_historical_features(
        entity_df=entity_df, features=[f"customer_txn_aggregates:{f}" for f in features]
    ).to_df()
    hist = hist.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    spec = spec_of(stream_repo.platform.store.get_feature_view("customer_txn_aggregates"))
    want = expected(spec, events_frame(events), hist[["customer_id", "event_timestamp"]])
    for f in features:
        assert hist[f].tolist() == pytest.approx(want[f].tolist(), rel=1e-9), f


def test_late_events_count_within_the_allowed_lateness_of_their_record_timestamp(stream_repo):
    """Lateness is judged against each record's Kafka timestamp (not the clock, so a replay decides
    the same): records stamped 30 minutes ago carry events 59 minutes older than that (accepted,
    though older than now - 1 h) and 61 minutes older (dead-lettered ``too_late``, in neither store).
    Late events land in their own tiles: arriving after newer ones changes nothing."""
    stamp = datetime.now(UTC) - timedelta(minutes=30)
    in_time = [
        dict(e, event_timestamp=(stamp - timedelta(minutes=59, seconds=i)).isoformat())
        for i, e in enumerate(payments(10, customers=3, seed=4))
    ]
    too_late = [
        dict(
            e,
            payment_id=e["payment_id"] + 100,
            event_timestamp=(stamp - timedelta(minutes=61, seconds=i)).isoformat(),
        )
        for i, e in enumerate(payments(3, customers=3, seed=5))
    ]
    recent = payments(40, customers=3, seed=6, first_id=200, span=timedelta(minutes=20))
    produce(stream_repo.broker.bootstrap, stream_repo.topic, recent)
    stamp_ms = int(stamp.timestamp() * 1000)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, [*in_time, *too_late], timestamp_ms=stamp_ms)

    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    total = len(recent) + len(in_time) + len(too_late)
    run.wait(
        lambda s: s.consumed == total and s.written_offline == len(recent) + len(in_time), what="ingestion"
    )
    stats = run.stop()

    assert dict(stats.dead_lettered) == {"too_late": len(too_late)}
    assert_exactly_once(stream_repo, [*recent, *in_time])  # in 24h windows, not in 10m / 1h ones
    letters = read_dead_letters(f"{stream_repo.topic}.dlq", bootstrap_servers=stream_repo.broker.bootstrap)
    assert sorted(json.loads(d.value)["payment_id"] for d in letters) == [e["payment_id"] for e in too_late]


def test_restart_resumes_from_the_commit_with_no_warm_up_and_values_exact(stream_repo):
    """The tiles in Redis are the stream state: a restarted ingestor reads only what it had not
    committed, and its values are those of all events, before and after the restart."""
    first = payments(150, seed=1)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, first)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_offline == len(first), what="first run")
    run.stop()

    second = payments(150, seed=2, first_id=1000, span=timedelta(minutes=10))
    produce(stream_repo.broker.bootstrap, stream_repo.topic, second)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_offline == len(second), what="second run")
    import gc

    assert gc.get_freeze_count() > 0  # a running ingestor keeps its start-up heap out of the GC ...
    stats = run.stop()
    assert gc.get_freeze_count() == 0  # ... and gives it back when it stops (a notebook's heap)
    assert stats.consumed == len(second)
    assert stats.written_online == len(AGGREGATION_VIEWS) * len(second) and stats.skipped_stale == 0
    assert_exactly_once(stream_repo, first + second)


def _rewind_group(repo) -> None:
    """Commit offset 0 for the group (no member running): the next run redelivers everything."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=repo.broker.bootstrap, group_id=repo.group, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(repo.topic, p) for p in (0, 1)]
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
    finally:
        consumer.close(autocommit=False)
    assert repo.committed() == {0: 0, 1: 0}


def test_a_full_redelivery_changes_nothing_online_or_offline(stream_repo):
    """Each event's tiles record the offset that applied it, each Delta append the offsets it holds:
    after the group's offsets are rewound to 0, nothing is applied or appended again."""
    events = payments(200, seed=3)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_offline == len(events), what="first run")
    first = run.stop()
    assert first.written_online == len(AGGREGATION_VIEWS) * len(events)

    _rewind_group(stream_repo)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.consumed == len(events) and s.skipped_duplicate == len(events), what="redelivery")
    again = run.stop()

    assert again.written_online == 0 and again.written_offline == 0
    assert again.skipped_stale == len(AGGREGATION_VIEWS) * len(events)  # every tile update a counted no-op
    assert_exactly_once(stream_repo, events)


# -- the transform-hook machinery (plain push views), on the fixture's RunningCount ------------------------
def test_a_stateful_transform_is_warmed_up_from_its_lookback_after_a_restart(transform_repo):
    """One RunningCount per partition, via its ``batch`` fast path. After a restart the ingestor
    replays each partition's history younger than ``lookback`` (1 h, by broker timestamp) through a
    fresh instance, writing nothing and not counting it as consumed, so counts go on where they
    were; records older than the lookback are not replayed, so they drop out of the counts. A
    negative amount is rejected by the transform (dead-lettered ``transform_error``)."""
    repo = transform_repo
    old = payments(
        40, customers=6, seed=1, span=timedelta(minutes=10), end=datetime.now(UTC) - timedelta(hours=2)
    )
    produce(repo.broker.bootstrap, repo.topic, old, timestamp_ms=int((time.time() - 7200) * 1000))
    first = payments(100, customers=6, seed=2, first_id=1000, span=timedelta(minutes=20))
    first[10]["amount"] = -1.0
    produce(repo.broker.bootstrap, repo.topic, first)
    run = Running(Ingestor(repo.platform, repo.config()))
    run.wait(lambda s: s.written_offline == len(old) + len(first) - 1, what="first run")
    stats = run.stop()
    assert dict(stats.dead_lettered) == {"transform_error": 1}
    want_first = running_counts(old + first)  # a fresh group starts at the log start: no warm-up
    assert_rows(repo, want_first)

    second = payments(100, customers=6, seed=3, first_id=2000, span=timedelta(minutes=10))
    produce(repo.broker.bootstrap, repo.topic, second)
    run = Running(Ingestor(repo.platform, repo.config()))
    run.wait(lambda s: s.written_offline == len(second), what="second run")
    stats = run.stop()
    assert stats.consumed == len(second)  # the warm-up replay is not counted as consumption
    assert_rows(repo, pd.concat([want_first, running_counts(second, history=first)], ignore_index=True))


def test_a_redelivered_record_is_the_same_row_online_and_offline(tmp_path, broker):
    """Rows carry their Kafka record's timestamp as created time, so a full redelivery writes nothing:
    online every row is an equal (event, created) row (skipped), offline every offset is recorded.
    The hook here has no ``batch`` method: the ingestor calls it per record; one that raises is
    dead-lettered (``transform_error``) and the others go on."""
    repo = StreamRepo(tmp_path, broker, "redis://127.0.0.1:6379/0", transform="PerRecordCount")
    try:
        events = payments(200, seed=3)
        events[7]["amount"] = -3.0
        produce(repo.broker.bootstrap, repo.topic, events)
        run = Running(Ingestor(repo.platform, repo.config()))
        run.wait(lambda s: s.written_offline == len(events) - 1, what="first run")
        first = run.stop()
        assert first.written_online > 0 and dict(first.dead_lettered) == {"transform_error": 1}
        customers = sorted({e["customer_id"] for e in events})
        online_before = repo.online("customer_txn_counts", "customer_id", customers)

        _rewind_group(repo)
        run = Running(Ingestor(repo.platform, repo.config()))
        run.wait(
            lambda s: s.consumed == len(events) and s.skipped_duplicate == len(events) - 1, what="redelivery"
        )
        again = run.stop()

        assert again.written_online == 0 and again.written_offline == 0
        assert again.skipped_stale == len(events) - 1
        assert_rows(repo, running_counts(events))
        assert repo.online("customer_txn_counts", "customer_id", customers).equals(online_before)
        # Offline created times are the records' Kafka timestamps (the ones online rows carry too).
        stamps = {
            (k, pd.Timestamp(t)): ms
            for k, t, ms in _record_times(repo, len(events))
            if (k, t) != (events[7]["customer_id"], events[7]["event_timestamp"])
        }
        rows = repo.delta_rows()
        got = {
            (k, t): c
            for k, t, c in zip(rows["customer_id"], rows["event_timestamp"], rows["created_at"], strict=True)
        }
        assert got == {key: pd.Timestamp(ms, unit="ms", tz="UTC") for key, ms in stamps.items()}
    finally:
        repo.platform.store.teardown()


def _record_times(repo, n: int) -> list[tuple]:
    """(customer_id, event time, Kafka timestamp ms) of the topic's first ``n`` records."""
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


def test_a_backlog_is_written_online_in_bounded_pieces_exactly_once(stream_repo):
    """A backlog larger than ``online_write_max_rows`` (here every event waits for one 2 s interval) goes
    online in pieces of at most that many rows, oldest first: every event is applied once to every view
    and the offsets commit to the end."""
    events = payments(400, seed=5)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events)
    stream_repo.configure(batch={"online_interval_ms": 2_000, "online_write_max_rows": 60})
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.written_online == len(AGGREGATION_VIEWS) * len(events), what="online writes")
    run.wait(lambda s: s.written_offline == len(events), what="the Delta append")
    stats = run.stop()
    assert stats.online_batches >= len(events) // 60  # pieces, not one write of the backlog
    assert stats.written_online == len(AGGREGATION_VIEWS) * len(events) and stats.skipped_stale == 0
    assert_exactly_once(stream_repo, events)
    assert sum(stream_repo.committed().values()) == len(events)


def test_a_stop_writes_the_whole_online_backlog_in_pieces(stream_repo):
    """A stop (drain) with more rows waiting for Redis than one online write takes writes them all, in
    pieces, before it commits."""
    events = payments(300, seed=6)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events)
    stream_repo.configure(
        batch={"online_interval_ms": 600_000, "online_max_rows": 100_000, "online_write_max_rows": 50}
    )
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(
        lambda s: s.consumed == len(events) and s.written_offline == len(events), what="the Delta append"
    )
    assert run.ingestor.stats.written_online == 0  # nothing was due online yet
    stats = run.stop()
    assert stats.written_online == len(AGGREGATION_VIEWS) * len(events)
    assert stats.online_batches >= len(events) // 50
    assert_exactly_once(stream_repo, events)
    assert sum(stream_repo.committed().values()) == len(events)


@pytest.mark.parametrize("sink", ["EventSink", "OnlineSink"])
def test_writes_are_packed_on_the_loop_thread_and_only_sent_on_the_writer_thread(sink, request, monkeypatch):
    """The online writer thread only talks to Redis: packing there (numpy and Arrow calls that each give
    up the GIL and wait to take it back from the busy loop) was most of a write's time. Tiles of raw
    events (EventSink) and rows of a transform (OnlineSink) alike."""
    import threading

    from fs_platform.plugins.kafka_ingest import sinks

    repo = request.getfixturevalue("stream_repo" if sink == "EventSink" else "transform_repo")
    real, seen = getattr(sinks, sink).prepare, []

    def spy(self, table, now, origins=None):
        seen.append(("pack", threading.current_thread().name))
        send = real(self, table, now, origins)

        def sending(progress=None):
            seen.append(("send", threading.current_thread().name))
            return send(progress)

        return sending

    monkeypatch.setattr(getattr(sinks, sink), "prepare", spy)
    events = payments(200, customers=6, seed=8)
    produce(repo.broker.bootstrap, repo.topic, events)
    run = Running(Ingestor(repo.platform, repo.config()))
    run.wait(lambda s: s.written_offline == len(events) and s.online_batches >= 1, what="the writes")
    run.stop()
    assert seen and {name for what, name in seen if what == "pack"} == {run.thread.name}
    assert {name.split("_")[0] for what, name in seen if what == "send"} == {"fs-ingest-online"}
    if sink == "EventSink":
        assert_exactly_once(repo, events)
    else:
        assert_rows(repo, running_counts(events))


def test_an_error_while_packing_is_the_write_s_error(stream_repo, monkeypatch):
    """Packing moved to the loop thread, its errors did not: a terminal one still stops the ingestor
    with the error, nothing committed."""
    from fs_platform.errors import OnlineWriteError
    from fs_platform.plugins.redis_store.online_store import RedisOnlineStore

    def broken(self, *args, **kwargs):
        raise OnlineWriteError("injected: packing failed")

    monkeypatch.setattr(RedisOnlineStore, "prepare_events", broken)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, payments(20, seed=9))
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.thread.join(60)
    assert not run.thread.is_alive() and isinstance(run.error, OnlineWriteError)
    assert set(stream_repo.committed().values()) == {None}
