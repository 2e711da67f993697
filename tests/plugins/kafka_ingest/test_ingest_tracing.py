"""#18.6: with OpenTelemetry on, one trace follows an event from the Kafka poll to the online write:
``fs.ingest.consume`` (the records of one partition in one poll) -> ``fs.ingest.write_online`` (on the
writer thread, later) -> ``fs.online.write_events`` (the Redis store's tile write); a write that takes
rows of several polls is the child of the first and links the others, so no event's trace ends at the
poll. Real tansu broker, Redis and Delta."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer

from fs_platform.plugins.kafka_ingest import Ingestor
from tests.plugins.kafka_ingest.conftest import Running, payments, produce
from tests.tracing import collected_spans, named, parent_of

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def _send_one(bootstrap: str, topic: str, event: dict):
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    meta = producer.send(topic, key=str(event["customer_id"]).encode(), value=json.dumps(event).encode()).get(
        30
    )
    producer.close()
    return meta.partition, meta.offset


def _holding(consumes, partition: int, offset: int):
    (span,) = [
        c
        for c in consumes
        if c.attributes["partition"] == partition
        and c.attributes["first_offset"] <= offset <= c.attributes["last_offset"]
    ]
    return span


def _joined(writes, consume) -> list:
    """The writes that are ``consume``'s child or link it."""
    ctx = consume.context
    return [
        w
        for w in writes
        if (w.parent and w.parent.span_id == ctx.span_id)
        or any(link.context.span_id == ctx.span_id for link in w.links)
    ]


def test_an_event_is_one_trace_from_the_poll_to_the_online_write(stream_repo):
    bulk = payments(150, seed=3)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, bulk)
    with collected_spans() as exporter:
        run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
        run.wait(lambda s: s.consumed == len(bulk) and s.written_offline == len(bulk), what="the bulk")
        tracked = payments(1, first_id=10_000, seed=4)[0]
        partition, offset = _send_one(stream_repo.broker.bootstrap, stream_repo.topic, tracked)
        run.wait(
            lambda s: s.consumed == len(bulk) + 1 and s.written_offline == len(bulk) + 1, what="the event"
        )
        run.stop()
        spans = exporter.get_finished_spans()

    consumes = named(spans, "fs.ingest.consume")
    online, offline = named(spans, "fs.ingest.write_online"), named(spans, "fs.ingest.write_offline")
    assert consumes and online and offline

    # The tracked event, alone in its poll: consume -> write_online -> the store's write, one trace.
    consume = _holding(consumes, partition, offset)
    (write,) = [w for w in _joined(online, consume) if parent_of(spans, w) is consume]
    (store_write,) = [s for s in named(spans, "fs.online.write_events") if parent_of(spans, s) is write]
    assert consume.attributes["topic"] == stream_repo.topic and consume.parent is None
    assert {consume.context.trace_id, write.context.trace_id, store_write.context.trace_id} == {
        consume.context.trace_id
    }
    assert write.start_time >= consume.end_time  # written later, on the writer thread
    (append,) = _joined(offline, consume)
    assert parent_of(spans, append) is consume or append.links

    # Every poll's records reach a write of each target: as its parent or as a link.
    for c in consumes:
        assert len(_joined(online, c)) == 1 and len(_joined(offline, c)) == 1, c.attributes


def test_rows_put_back_after_a_failed_write_keep_their_trace(stream_repo, monkeypatch):
    """A transient failure injected before the real tile write (around the real sink): the failed
    write's span records the error, and the write that stores the rows joins the same consume spans."""
    from fs_platform.errors import SinkUnavailable
    from fs_platform.plugins.kafka_ingest import sinks

    real, calls = sinks.EventSink.prepare, []

    def flaky(self, table, now, origins):
        send = real(self, table, now, origins)

        def first_fails(progress=None):
            calls.append(table.num_rows)
            if len(calls) == 1:
                raise SinkUnavailable("injected: before the write")
            return send(progress)

        return first_fails

    monkeypatch.setattr(sinks.EventSink, "prepare", flaky)
    stream_repo.configure(retry={"attempts": 1})  # the failure reaches the loop: rows are put back
    events = payments(40, seed=5)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events)
    with collected_spans() as exporter:
        run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
        run.wait(
            lambda s: (
                s.consumed == len(events) and s.online_batches >= 1 and s.written_offline == len(events)
            ),
            what="ingestion",
        )
        run.stop()
        spans = exporter.get_finished_spans()

    online = named(spans, "fs.ingest.write_online")
    failed = [w for w in online if not w.status.is_ok]
    assert len(calls) >= 2 and len(failed) == 1
    assert any(e.name == "exception" for e in failed[0].events)
    lost = {failed[0].parent.span_id, *(link.context.span_id for link in failed[0].links)}
    stored = {
        s
        for w in online
        if w.status.is_ok
        for s in (w.parent.span_id, *(link.context.span_id for link in w.links))
    }
    assert lost <= stored
