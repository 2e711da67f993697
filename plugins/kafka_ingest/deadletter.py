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

``replay_dead_letters`` sends letters back to their source topic after a fix (``fs ingest
replay-dlq``, and ``fs ops``' ``replay_dead_letters`` action): the original key, value and headers
plus ``fs-dlq-replayed-from`` (dead-letter partition@offset). The ingestor then consumes them like
any record (online writes are event-time ordered; one that still fails is dead-lettered again).
A letter is replayed only if it is whole (not truncated), its source topic is declared, and it
decodes now (``check``); a source record dead-lettered twice (at-least-once) is replayed once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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
    return (
        key,
        value,
        headers + [(PREFIX + "truncated", b"1"), (PREFIX + "original-size", str(whole).encode())],
    )


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
            log.warning(
                "dead letter of %s[%d]@%d not sent: %s",
                message.topic,
                message.partition,
                message.offset,
                type(e).__name__,
            )
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
                raise BrokerUnavailable(
                    f"dead-letter topic {self.topic!r}: produce failed: {type(e).__name__}"
                ) from e
            failed = [x for x in self._letters if x.future is None or x.future.failed()]
            self._letters = []
            for letter in failed:
                if letter.attempts >= _ATTEMPTS:
                    self.parked += 1
                    m = letter.message
                    metrics.PARKED.labels(m.topic).inc()
                    cause = "not sent" if letter.future is None else type(letter.future.exception).__name__
                    log.error(
                        "dead letter of %s[%d]@%d (%s) parked after %d attempts: %s; the original stays in "
                        "its topic until retention",
                        m.topic,
                        m.partition,
                        m.offset,
                        letter.error.reason,
                        letter.attempts,
                        cause,
                    )
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
    dlq_partition: int = -1  # where the letter itself sits in the dead-letter topic
    dlq_offset: int = -1
    timestamp_ms: int = 0  # when it was dead-lettered (broker timestamp of the letter)
    headers: tuple = ()  # the original's own headers (without fs-dlq-*)


def _letter(m) -> DeadLetter:
    h = {k: v.decode(errors="replace") for k, v in (m.headers or []) if k.startswith(PREFIX)}
    return DeadLetter(
        h.get(PREFIX + "topic", "?"),
        int(h.get(PREFIX + "partition", -1)),
        int(h.get(PREFIX + "offset", -1)),
        h.get(PREFIX + "reason", "?"),
        h.get(PREFIX + "detail", ""),
        m.key,
        m.value,
        int(h[PREFIX + "original-size"]) if PREFIX + "original-size" in h else None,
        m.partition,
        m.offset,
        m.timestamp or 0,
        tuple((k, v) for k, v in (m.headers or []) if not k.startswith(PREFIX)),
    )


def iter_dead_letters(
    topic: str,
    start: dict[int, int] | None = None,
    end: dict[int, int] | None = None,
    idle_s: float = 2.0,
    limit: int | None = None,
    **kafka_kwargs,
) -> Iterator[DeadLetter]:
    """Dead letters of ``topic`` from ``start`` (per partition; default: the beginning) until ``end``
    (exclusive, per partition; default: until nothing arrives for ``idle_s``, never by the broker's end
    offsets, which tansu under-reports). No consumer group; commits nothing."""
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_kwargs)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or set())
        if end is not None:
            parts = [p for p in parts if end.get(p, 0) > (start or {}).get(p, 0)]
        tps = {p: TopicPartition(topic, p) for p in parts}
        if not tps:
            return
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            if start and p in start:
                consumer.seek(tp, start[p])
            else:
                consumer.seek_to_beginning(tp)
        open_parts, idle, n = set(tps), 0.0, 0
        while open_parts and idle < idle_s and (limit is None or n < limit):
            batch = consumer.poll(timeout_ms=500)
            idle = idle + 0.5 if not batch else 0.0
            for tp, messages in batch.items():
                for m in messages:
                    if end is not None and m.offset >= end.get(tp.partition, 0):
                        open_parts.discard(tp.partition)
                        break
                    n += 1
                    yield _letter(m)
                    if end is not None and m.offset + 1 >= end.get(tp.partition, 0):
                        open_parts.discard(tp.partition)
    finally:
        consumer.close()


def read_dead_letters(topic: str, limit: int = 100, idle_s: float = 2.0, **kafka_kwargs) -> list[DeadLetter]:
    """Up to ``limit`` dead letters from the start of ``topic`` (no consumer group; commits nothing).
    ``kafka_kwargs``: connection settings (``bootstrap_servers``, ...)."""
    return list(iter_dead_letters(topic, idle_s=idle_s, limit=limit, **kafka_kwargs))


@dataclass
class ReplayResult:
    """What ``replay_dead_letters`` did (or would do: ``dry_run``); counts only, never payloads."""

    replayed: Counter = field(default_factory=Counter)  # per source topic
    still_failing: Counter = field(default_factory=Counter)  # per reason the current decoder gives
    truncated: int = 0  # letters cut to fit: the whole original is only in its source topic
    unknown_topic: int = 0  # source topic not declared in ingest.yaml
    duplicates: int = 0  # a source record dead-lettered twice (at-least-once): replayed once
    end: dict[int, int] = field(default_factory=dict)  # per dead-letter partition: next offset not read

    def to_dict(self) -> dict:
        return {
            "replayed": sum(self.replayed.values()),
            "replayed_by_topic": dict(self.replayed),
            "still_failing": dict(self.still_failing),
            "truncated": self.truncated,
            "unknown_topic": self.unknown_topic,
            "duplicates": self.duplicates,
            "dlq_end_offsets": {str(p): o for p, o in sorted(self.end.items())},
        }


def replay_dead_letters(
    config,
    repo,
    *,
    start: dict[int, int] | None = None,
    end: dict[int, int] | None = None,
    dry_run: bool = False,
    check: Callable[[str, bytes | None], str | None] | None = None,
) -> ReplayResult:
    """Send the dead letters in ``[start, end)`` (per dead-letter partition) back to their source
    topics (module docstring). ``check(topic, value)`` returns the reason a letter would fail again
    (default: the topic's current decoder, when ingest.yaml declares its fields), or None."""
    from datetime import UTC, datetime

    from fs_platform.plugins.kafka_ingest.config import kafka_client_kwargs

    kw = kafka_client_kwargs(config)
    check = check or decoder_check(config, repo, datetime.now(UTC))
    topics = {t.topic for t in config.topics}
    out, seen = ReplayResult(), set()
    producer = None if dry_run else KafkaProducer(acks="all", **kw)
    try:
        for d in iter_dead_letters(config.dead_letter_topic, start, end, **kw):
            out.end[d.dlq_partition] = d.dlq_offset + 1
            if d.original_size is not None:
                out.truncated += 1
                continue
            if d.topic not in topics:
                out.unknown_topic += 1
                continue
            if (d.topic, d.partition, d.offset) in seen:
                out.duplicates += 1
                continue
            seen.add((d.topic, d.partition, d.offset))
            reason = check(d.topic, d.value)
            if reason is not None:
                out.still_failing[reason] += 1
                continue
            if producer is not None:
                origin = f"{d.dlq_partition}@{d.dlq_offset}".encode()
                producer.send(
                    d.topic,
                    key=d.key,
                    value=d.value,
                    headers=[*d.headers, (PREFIX + "replayed-from", origin)],
                )
            out.replayed[d.topic] += 1
        if producer is not None:
            producer.flush(timeout=30)
    except KafkaError as e:
        raise BrokerUnavailable(
            f"dead-letter replay: {type(e).__name__}",
            hint="check the broker; a rerun replays the same range again",
        ) from e
    finally:
        if producer is not None:
            producer.close(timeout=5)
    log.info(
        "dead-letter replay: %d replayed, %d still failing, %d truncated",
        sum(out.replayed.values()),
        sum(out.still_failing.values()),
        out.truncated,
    )
    return out


def decoder_check(config, repo, now) -> Callable[[str, bytes | None], str | None]:
    """The reason the topic's current decoder (ingest.yaml ``fields``) rejects a value, or None."""
    from pathlib import Path

    from fs_platform.plugins.kafka_ingest.decode import RecordDecoder

    decoders = {t.topic: RecordDecoder(t, dict(t.fields), Path(repo)) for t in config.topics if t.fields}

    def check(topic: str, value: bytes | None) -> str | None:
        decoder = decoders.get(topic)
        if decoder is None:
            return None
        try:
            decoder(value, now)
        except BadRecord as e:
            return e.reason
        return None

    return check
