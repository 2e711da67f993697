"""Poison messages on the real broker: whatever a record's size or shape, it is dead-lettered (or, if the
dead-letter topic refuses it, parked and counted) and the ingestor goes on with the valid events."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaProducer, TopicPartition

from fs_platform.plugins.kafka_ingest import Ingestor
from fs_platform.plugins.kafka_ingest.deadletter import read_dead_letters
from tests.plugins.kafka_ingest.conftest import Running, assert_exactly_once, payments, produce

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
BIG = 1_500_000  # over kafka-python's default 1 MB max_request_size, under the consumer's fetch limit


def _send_null_record(producer: KafkaProducer, topic: str) -> None:
    """A record with a null key and a null value, as other clients may produce (legal in Kafka):
    kafka-python's ``send`` refuses it, so it goes straight to the producer's accumulator."""
    producer.partitions_for(topic)  # metadata first
    producer._accumulator.append(TopicPartition(topic, 0), int(time.time() * 1000), None, None, [])
    producer._sender.wakeup()


def _poison(event: dict) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected reason) of each poison record, built from a valid event."""

    def valid(**change) -> bytes:
        return json.dumps({**event, **change}).encode()

    key = str(event["customer_id"]).encode()
    number = valid(amount=1.0).replace(b'"amount": 1.0', b'"amount": %s')
    return [
        (b"bad", b"\xff" * BIG, "undecodable"),
        (str(10**20).encode(), valid(customer_id=10**20), "bad_number"),
        (key, number % b"NaN", "bad_number"),
        (key, number % b"Infinity", "bad_number"),
        (key, valid(amount=1e300), "bad_number"),
        (None, valid(payment_id=90_001), "bad_key"),  # valid, but keyed to no partition of its customer
        (b"999999", valid(payment_id=90_002), "bad_key"),
    ]


def test_poison_of_any_size_or_shape_is_dead_lettered_and_valid_events_still_flow(stream_repo):
    events = payments(200, customers=10)
    poison = _poison(events[0])
    producer = KafkaProducer(bootstrap_servers=stream_repo.broker.bootstrap, max_request_size=4 * 1024 * 1024)
    _send_null_record(producer, stream_repo.topic)
    for key, value, _ in poison:
        producer.send(stream_repo.topic, key=key, value=value)
    producer.flush()
    producer.close()
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events)
    total = len(events) + len(poison) + 1

    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(
        lambda s: s.consumed == total and s.written_offline == len(events), what="ingestion past the poison"
    )
    committed = lambda: sum(v or 0 for v in stream_repo.committed().values())  # noqa: E731
    deadline = time.monotonic() + 30
    while committed() < total and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = run.stop()

    assert (
        dict(stats.dead_lettered) == {"undecodable": 2, "bad_number": 4, "bad_key": 2} and stats.parked == 0
    )
    assert committed() == total
    assert_exactly_once(stream_repo, events)  # no NaN, no 1e300, no event of a foreign partition counted
    letters = read_dead_letters(f"{stream_repo.topic}.dlq", bootstrap_servers=stream_repo.broker.bootstrap)
    big = [d for d in letters if d.original_size is not None]
    assert len(big) == 1 and big[0].reason == "undecodable" and big[0].original_size >= BIG
    assert 900_000 < len(big[0].value) < 1_000_000 and big[0].value == b"\xff" * len(big[0].value)
    null = [d for d in letters if d.key is None and d.value == b""]
    assert len(null) == 1 and null[0].reason == "undecodable"


def test_a_dead_letter_the_broker_refuses_is_retried_then_parked_and_the_ingestor_goes_on(stream_repo):
    # A dead-letter topic name the broker can never take: every letter fails, however often it is sent.
    stream_repo.configure(dead_letter_topic="no such topic!")
    events = payments(60, customers=5)
    produce(stream_repo.broker.bootstrap, stream_repo.topic, events, raw=[b"not json", b"[1]"])
    total = len(events) + 2

    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    run.wait(lambda s: s.parked == 2 and s.written_offline == len(events), what="letters parked")
    committed = lambda: sum(v or 0 for v in stream_repo.committed().values())  # noqa: E731
    deadline = time.monotonic() + 30
    while committed() < total and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = run.stop()

    assert stats.dead_lettered["undecodable"] == 2 and committed() == total
    assert_exactly_once(stream_repo, events)
