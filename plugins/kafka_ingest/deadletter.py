"""Dead-letter topic: the original key and bytes of a bad message, with why and where it came from.

Headers: ``fs-dlq-reason`` (one of ``decode.REASONS``), ``fs-dlq-detail`` (field names and types,
never values), ``fs-dlq-topic``, ``fs-dlq-partition``, ``fs-dlq-offset``, ``fs-dlq-timestamp`` (ms),
plus the original headers. Delivery is at-least-once: the producer is flushed before the source
offsets are committed, so a crash in between may dead-letter a message twice, never zero times.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from fs.errors import BrokerUnavailable
from plugins.kafka_ingest.decode import BadRecord

PREFIX = "fs-dlq-"


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str):
        self._producer = producer
        self.topic = topic
        self._pending = 0

    def send(self, message, error: BadRecord) -> None:
        headers = [h for h in (message.headers or []) if not h[0].startswith(PREFIX)]
        headers += [
            (PREFIX + "reason", error.reason.encode()),
            (PREFIX + "detail", error.detail.encode()),
            (PREFIX + "topic", message.topic.encode()),
            (PREFIX + "partition", str(message.partition).encode()),
            (PREFIX + "offset", str(message.offset).encode()),
            (PREFIX + "timestamp", str(message.timestamp).encode()),
        ]
        self._producer.send(self.topic, key=message.key, value=message.value, headers=headers)
        self._pending += 1

    def flush(self, timeout_s: float) -> None:
        """Wait until every dead letter sent so far is acknowledged (before committing offsets)."""
        if not self._pending:
            return
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as e:
            raise BrokerUnavailable(f"dead-letter topic {self.topic!r}: produce failed: {type(e).__name__}") from e
        self._pending = 0

    def close(self) -> None:
        self._producer.close(timeout=5)


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as read back by ``read_dead_letters``."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    key: bytes | None
    value: bytes | None


def read_dead_letters(topic: str, limit: int = 100, idle_s: float = 2.0, **kafka_kwargs) -> list[DeadLetter]:
    """Up to ``limit`` dead letters from the start of ``topic`` (no consumer group; commits nothing).
    ``kafka_kwargs``: connection settings (``bootstrap_servers``, ...)."""
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_kwargs)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[DeadLetter] = []
        idle = 0.0
        while len(out) < limit and idle < idle_s and tps:
            batch = consumer.poll(timeout_ms=500, max_records=limit - len(out))
            idle = idle + 0.5 if not batch else 0.0
            for messages in batch.values():
                for m in messages:
                    h = {k: v.decode(errors="replace") for k, v in (m.headers or []) if k.startswith(PREFIX)}
                    out.append(DeadLetter(h.get(PREFIX + "topic", "?"), int(h.get(PREFIX + "partition", -1)),
                                          int(h.get(PREFIX + "offset", -1)), h.get(PREFIX + "reason", "?"),
                                          h.get(PREFIX + "detail", ""), m.key, m.value))
        return out
    finally:
        consumer.close()
