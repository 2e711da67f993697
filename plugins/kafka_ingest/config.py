"""Ingest declarations kept in the feature repo: ``<repo>/ingest.yaml``.

    kafka:
      bootstrap_servers: ${FS_KAFKA_BOOTSTRAP:-127.0.0.1:9092}
      group_id: fs-ingest-payments
    dead_letter_topic: payments.dlq
    topics:
      - topic: payments                # raw events feeding aggregation views (docs/aggregations.md)
        push_source: payments_push
        format: json
        fields: {customer_id: int, merchant_id: int, amount: float, approved: bool,
                 event_timestamp: timestamp}
        key_field: customer_id         # the Kafka key must be this field's value (else dead-lettered)
        bounds: {amount: [-1.0e9, 1.0e9]}
        event_time_field: event_timestamp
        targets: both
      - topic: profile-updates         # rows of a plain view, optionally through a transform hook
        push_source: profile_push
        transform: transforms.py:normalise_profile

``${VAR}`` / ``${VAR:-default}`` are expanded from the environment like feature_store.yaml;
``envs/<env>.yaml`` may carry an ``ingest:`` section that is deep-merged over this file.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fs_platform.config import expand_env, first_error, merge, read_yaml
from fs_platform.errors import ConfigError
from fs_platform.metadata import parse_duration

FILE_NAME = "ingest.yaml"
FieldType = Literal["int", "int32", "float", "string", "bool", "timestamp"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Model):
    """How to reach the brokers and join the consumer group."""

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` list."""

    group_id: str = "fs-ingest"
    """Consumer group; run more ``fs ingest run`` processes with the same group to scale out."""

    client_id: str = "fs-ingest"
    """Client id reported to the brokers (shows up in broker logs and quotas)."""

    session_timeout_ms: int = 10_000
    """A member that sends no heartbeat for this long is removed from the group."""

    heartbeat_interval_ms: int = 3_000
    """Heartbeat period (background thread); well under ``session_timeout_ms``."""

    max_poll_interval_ms: int = 300_000
    """Longest allowed gap between polls, including a slow flush, before the member is evicted."""

    fetch_max_bytes: int = 16 * 1024 * 1024
    """Upper bound of one fetch response: with ``max_poll_records`` this bounds prefetch memory."""

    max_poll_records: int = 5_000
    """Records returned by one poll: the ingestor decodes, transforms and buffers a poll at once, so
    larger polls amortise the per-batch work (5,000 JSON payments ~1 MB)."""

    fetch_max_wait_ms: int = 100
    """Longest the broker holds a fetch waiting for data: an upper bound on added latency when idle."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """Transport security."""

    sasl_mechanism: str | None = None
    """SASL mechanism (PLAIN, SCRAM-SHA-256, ...) when using SASL."""

    sasl_username_env: str | None = None
    """Name of the environment variable holding the SASL username."""

    sasl_password_env: str | None = None
    """Name of the environment variable holding the SASL password (never put secrets in the file)."""


class BatchSettings(_Model):
    """When buffered rows are written, and how much may be buffered."""

    online_max_rows: int = Field(5_000, gt=0)
    """Write to the online store once this many rows are pending..."""

    online_interval_ms: int = Field(100, ge=0)
    """... or once the oldest pending row waited this long (drives freshness)."""

    online_write_max_rows: int = Field(50_000, gt=0)
    """Most rows one online write takes: a backlog (after an outage or lag) is written in pieces of
    this many, oldest first, instead of one write of ``max_buffered_rows`` (each piece's offsets are
    marked written as soon as it lands)."""

    offline_max_rows: int = Field(50_000, gt=0)
    """Append to Delta once this many rows are buffered..."""

    offline_interval_ms: int = Field(5_000, ge=0)
    """... or once the oldest buffered row waited this long. Offsets are committed after it."""

    offline_idle_ms: int = Field(1_000, ge=0)
    """... or, when a poll returns nothing (the consumer has caught up), once the oldest buffered row
    waited this long: a burst is durable (and committed) soon after it is consumed instead of at the
    next interval. 0 turns this off. Lower values mean more, smaller Delta commits at low traffic."""

    max_buffered_rows: int = Field(200_000, gt=0)
    """Stop fetching while this many rows wait for a target (bounded memory whatever the lag)."""


class RetrySettings(_Model):
    """Retries of a failing write (transient errors only) and the circuit breaker around them."""

    attempts: int = Field(4, ge=1)
    """Attempts per write before it counts as one failure of the target."""

    backoff_base_ms: int = Field(100, ge=0)
    """First retry delay; doubles per attempt, full jitter."""

    backoff_max_ms: int = Field(5_000, ge=0)
    """Largest retry delay."""

    breaker_failures: int = Field(3, ge=1)
    """Consecutive failed writes that open the breaker (fetching stops, health reports degraded)."""

    breaker_reset_ms: int = Field(5_000, ge=0)
    """How long the breaker stays open before one probe write (half-open)."""

    online_deadline_ms: int = Field(2_000, gt=0)
    """An online write (with its retries) that has had no answer from Redis for this long counts as a
    failed write, and so does each further such period: a hung Redis opens the breaker after
    ``breaker_failures`` periods (6 s with the defaults) and ``/health`` reports degraded from the first
    one. A write answers after each round trip (~2,000 keys), so a long write that keeps answering (a
    backlog on a slow machine) is not counted. No retry starts later than this after the write began."""

    offline_deadline_ms: int = Field(30_000, gt=0)
    """The same for a Delta append (larger: appending ``offline_max_rows`` to object storage takes
    seconds)."""

    drain_timeout_ms: int = Field(30_000, ge=0)
    """On SIGTERM, how long to keep trying to write and commit what is buffered."""


class TopicSpec(_Model):
    """One topic feeding one Feast push source."""

    topic: str
    """Kafka topic name."""

    push_source: str
    """Feast PushSource the rows belong to (its feature views and its batch source are the targets)."""

    format: Literal["json", "avro"] = "json"
    """Message encoding: JSON objects, or Avro binary (schemaless) with ``avro_schema``."""

    avro_schema: str | None = None
    """Path of the ``.avsc`` writer schema (relative to the repo) when ``format: avro``."""

    fields: dict[str, FieldType] = Field(default_factory=dict)
    """Required message fields and their types (after ``field_mapping``). Empty: the feature view's
    join keys, features and the event-time field, which only works without a ``transform``."""

    key_field: str | None = None
    """Field whose value (as UTF-8 text) every record's Kafka key must be: the producer partitions by that
    key, so a record with a null or different key sits on another partition than its entity's other
    events and is dead-lettered (``bad_key``). Default: the fed views' join key when they have one."""

    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Field -> ``[min, max]`` (inclusive) for numeric fields; a value outside is dead-lettered
    (``bad_number``). Without bounds an int must fit 64 bits and a float be finite with a magnitude of at
    most ``max_abs_float``."""

    max_abs_float: float = Field(1e15, gt=0)
    """Largest float magnitude accepted in a field without ``bounds`` (1e15 keeps a window's sums and sums
    of squares finite; 1e300 would make a variance infinite)."""

    field_mapping: dict[str, str] = Field(default_factory=dict)
    """Message field name -> name used by ``fields``, the transform and the feature view."""

    event_time_field: str = "event_timestamp"
    """Field with the event time: ISO 8601 string, or epoch number in ``epoch_unit``."""

    epoch_unit: Literal["s", "ms", "us"] = "ms"
    """Unit of numeric event times."""

    max_future: str = "5m"
    """Events whose time is further than this ahead of the ingestor's clock are dead-lettered."""

    targets: Literal["online", "offline", "both"] = "both"
    """Where rows go: the online store, the push source's Delta batch source, or both."""

    transform: str | None = None
    """``file.py:name`` in the repo. A function ``(record) -> row | list[row] | None`` or a class whose
    instances are such callables (one instance per partition, so it may keep rolling state)."""

    quality_gate: bool = False
    """Run the fed views' expectation suites (``expectations/<view>.json`` with ``meta.gate``) on every
    poll batch: ``strict`` dead-letters a failing batch (reason ``validation_failed``), ``warn`` writes
    it and records the failure. Off by default: it costs ~0.1 s per batch, and on a stateful
    transform one bad input stays in the rolling state for its window, so strict rejections cascade —
    reject bad inputs in the transform or with field types where you can."""

    @field_validator("max_future")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _avro_needs_schema(self) -> TopicSpec:
        if self.format == "avro" and not self.avro_schema:
            raise ValueError(f"topic {self.topic!r}: format avro needs avro_schema")
        for name, (low, high) in self.bounds.items():
            if not low <= high:
                raise ValueError(
                    f"topic {self.topic!r}: bounds of {name!r} must be [min, max] with min <= max"
                )
        return self

    @property
    def max_future_delta(self) -> timedelta:
        return parse_duration(self.max_future)

    @property
    def online(self) -> bool:
        return self.targets in ("online", "both")

    @property
    def offline(self) -> bool:
        return self.targets in ("offline", "both")


class IngestConfig(_Model):
    """Everything ``fs ingest run`` needs besides the feature store itself."""

    kafka: KafkaSettings = KafkaSettings()
    """Broker connection and consumer-group settings."""

    topics: list[TopicSpec]
    """Topics to consume; each feeds one push source."""

    dead_letter_topic: str = "fs.dead-letter"
    """Where undecodable or invalid messages go, with the original bytes and a reason header."""

    dead_letter_max_bytes: int = Field(1_000_000, ge=16_384)
    """Largest dead letter written: a bigger original is truncated to fit (headers give its size). Keep it
    under the brokers' ``message.max.bytes`` (1 MB by default)."""

    batch: BatchSettings = BatchSettings()
    """Batching and buffering limits."""

    retry: RetrySettings = RetrySettings()
    """Retry, circuit-breaker and drain settings."""

    http_port: int | None = None
    """Serve ``/metrics`` (Prometheus) and ``/health`` on this loopback port (None: off)."""

    @model_validator(mode="after")
    def _unique_topics(self) -> IngestConfig:
        names = [t.topic for t in self.topics]
        if len(names) != len(set(names)):
            raise ValueError("each topic may be declared once")
        if self.dead_letter_topic in names:
            raise ValueError("dead_letter_topic must not be one of the consumed topics")
        return self

    def select(self, topics: list[str] | None) -> IngestConfig:
        """This config restricted to ``topics`` (all when empty)."""
        if not topics:
            return self
        unknown = sorted(set(topics) - {t.topic for t in self.topics})
        if unknown:
            raise ConfigError(
                f"topic(s) not declared in {FILE_NAME}: {', '.join(unknown)}",
                hint=f"declared: {', '.join(t.topic for t in self.topics)}",
            )
        return self.model_copy(update={"topics": [t for t in self.topics if t.topic in topics]})


def load_ingest_config(repo: str | Path, env: str = "dev", overrides: dict | None = None) -> IngestConfig:
    """Read ``<repo>/ingest.yaml`` (plus the env overlay's ``ingest:`` section and ``overrides``)."""
    repo = Path(repo)
    path = repo / FILE_NAME
    if not path.is_file():
        raise ConfigError(
            f"no {FILE_NAME} in {repo}", hint="declare the topics to ingest, see docs/ingest.md"
        )
    data = read_yaml(path)
    overlay = repo / "envs" / f"{env}.yaml"
    if env != "dev" and overlay.is_file():
        data = merge(data, read_yaml(overlay).get("ingest") or {})
    data = merge(data, overrides or {})
    try:
        return IngestConfig(**expand_env(data, path))
    except ValidationError as e:
        where, msg = first_error(e)
        raise ConfigError(f"invalid {path}: {where}: {msg}") from None


def kafka_client_kwargs(config: IngestConfig) -> dict:
    """Connection settings shared by the consumer, the dead-letter producer and admin reads."""
    k = config.kafka
    kw: dict = {
        "bootstrap_servers": k.bootstrap_servers.split(","),
        "client_id": k.client_id,
        "security_protocol": k.security_protocol,
    }
    if k.sasl_mechanism:
        kw["sasl_mechanism"] = k.sasl_mechanism
        kw["sasl_plain_username"] = os.environ.get(k.sasl_username_env or "", "")
        kw["sasl_plain_password"] = os.environ.get(k.sasl_password_env or "", "")
    return kw
