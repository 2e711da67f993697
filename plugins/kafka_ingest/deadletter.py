"""Dead-letter topic: the original key and bytes of a bad message, with why and where it came from.

Headers: ``fs-dlq-reason`` (one of ``decode.REASONS``), ``fs-dlq-detail`` (field names and types,
never values), ``fs-dlq-topic``, ``fs-dlq-partition``, ``fs-dlq-offset``, ``fs-dlq-timestamp`` (ms),
plus the original headers. Delivery is at-least-once: the producer is flushed before the source
offsets are committed, so a crash in between may dead-letter a message twice, never zero times.

No message can stop the ingestor here: an original too large for a dead letter is truncated to
``dead_letter_max_bytes`` (``fs-dlq-truncated`` and ``fs-dlq-original-size`` headers; the source
topic/partition/offset headers point at the whole), a record with neither key nor value gets an empty
value, and a letter the broker does not take is sent again, then *parked*: counted and logged by its
source reference (never its bytes), so its offset can be committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from fs_platform.errors import BrokerUnavailable
from fs_platform.plugins.kafka_ingest import metrics
from fs_platform.plugins.kafka_ingest.decode import BadRecord

log = logging.getLogger(__name__)
PREFIX = "fs-dlq-"
_ATTEMPTS = 3  # sends of one letter before it is parked
_OVERHEAD = 1_024  # record batch and record framing, with room to spare


@dataclass
class _Letter:
    message: object  # the consumed record
    error: BadRecord
    future: object | None  # the producer's future; None when send() itself raised
    attempts: int = 1


def _fit(message, error: BadRecord, max_bytes: int) -> tuple[bytes | None, bytes, list]:
    """Key, value and headers of the letter of ``message``, within ``max_bytes`` in all."""
    key, value = message.key, message.value
    headers = [
        (PREFIX + "reason", error.reason.encode()),
        (PREFIX + "detail", error.detail.encode()),
        (PREFIX + "topic", message.topic.encode()),
        (PREFIX + "partition", str(message.partition).encode()),
        (PREFIX + "offset", str(message.offset).encode()),
        (PREFIX + "timestamp", str(message.timestamp).encode()),
    ]
    original = [h for h in (message.headers or []) if not h[0].startswith(PREFIX)]
    size = lambda hs: sum(len(k) + len(v) + 8 for k, v in hs)  # noqa: E731
    whole = len(key or b"") + len(value or b"") + size(original)
    budget = max_bytes - _OVERHEAD - size(headers) - 128  # 128: the two truncation headers
    if whole <= budget:
        return key, value if value is not None else b"", headers + original
    # Too large: the original headers go, then the key and value keep what fits (key first, up to half).
    key = None if key is None else key[: budget // 2]
    value = b"" if value is None else value[: budget - len(key or b"")]
    return key, value, headers + [(PREFIX + "truncated", b"1"), (PREFIX + "original-size", str(whole).encode())]


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str, max_bytes: int):
        self._producer = producer
        self.topic = topic
        self._max_bytes = max_bytes
        self._letters: list[_Letter] = []  # sent since the last flush
        self.parked = 0  # letters given up on (this process)

    def send(self, message, error: BadRecord) -> None:
        self._letters.append(_Letter(message, error, self._send(message, error)))

    def _send(self, message, error: BadRecord):
        key, value, headers = _fit(message, error, self._max_bytes)
        try:
            return self._producer.send(self.topic, key=key, value=value, headers=headers)
        except (KafkaError, ValueError, TypeError) as e:  # rejected before sending: retried at flush
            log.warning("dead letter of %s[%d]@%d not sent: %s", message.topic, message.partition, message.offset,
                        type(e).__name__)
            return None

    def flush(self, timeout_s: float) -> int:
        """Wait until every letter sent so far is acknowledged or parked (before committing offsets);
        returns how many were parked. Raises ``BrokerUnavailable`` if the producer cannot flush in time
        (the letters stay pending: the commit is retried later)."""
        parked_before = self.parked
        while self._letters:
            try:
                self._producer.flush(timeout=timeout_s)
            except KafkaError as e:
                raise BrokerUnavailable(f"dead-letter topic {self.topic!r}: produce failed: {type(e).__name__}") from e
            failed = [x for x in self._letters if x.future is None or x.future.failed()]
            self._letters = []
            for letter in failed:
                if letter.attempts >= _ATTEMPTS:
                    self.parked += 1
                    m = letter.message
                    metrics.PARKED.labels(m.topic).inc()
                    cause = "not sent" if letter.future is None else type(letter.future.exception).__name__
                    log.error("dead letter of %s[%d]@%d (%s) parked after %d attempts: %s; the original stays in "
                              "its topic until retention", m.topic, m.partition, m.offset, letter.error.reason,
                              letter.attempts, cause)
                    continue
                letter.future = self._send(letter.message, letter.error)
                letter.attempts += 1
                self._letters.append(letter)
        return self.parked - parked_before

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
    original_size: int | None = None  # bytes of the original's key, value and headers, when truncated


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
                                          h.get(PREFIX + "detail", ""), m.key, m.value,
                                          int(h[PREFIX + "original-size"]) if PREFIX + "original-size" in h else None))
        return out
    finally:
        consumer.close()
