"""The Flink job's one Python step (runs in Flink's Python worker, the Flink environment): a vectorized
UDF that takes a batch of Kafka records and does exactly what the ingestor does with a poll batch,
with the ingestor's own code: decode and validate (``TopicPipeline.process``: bad records, ``bad_key``,
``too_late``), write the tiles (``EventSink`` -> ``tile_events.prepare_events``: each event applied at
most once per entity via its ``topic/partition`` offset), append the raw events to Delta when the
topic's targets include offline (``OfflineSink.append``: one commit per batch and topic that records
each partition's last offset as a Delta application transaction, and drops rows at or below it),
dead-letter the rest (``DeadLetters``).

Flink finishes a Python batch before a checkpoint barrier passes, so every record before a checkpoint
is in Redis and Delta (and its dead letters acknowledged) when the checkpoint completes; records after
it are replayed on restore, and the offset marks (tiles) and transaction versions (Delta) make the
replay a no-op. Metrics: Flink's (group ``fs``) and, with ``metrics_port``, the ingestor's Prometheus
metrics and ``/health`` (``flink.metrics``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from kafka.structs import TopicPartition
from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, udf

log = logging.getLogger(__name__)
STATUS_OK = "ok"


@dataclass
class Record:
    """The fields of a Kafka record the ingestor's pipeline and dead letters read."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # ms
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)


def _millis(ts: pd.Series) -> np.ndarray:
    t = pd.to_datetime(ts)
    if t.dt.tz is not None:
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    return t.astype("datetime64[ms]").astype("int64").to_numpy()


class ApplyRecords(ScalarFunction):
    """``apply_records(topic, partition, offset, ts, key, value)`` -> per record ``ok`` or the dead-letter
    reason."""

    def __init__(self, repo: str, env: str, views: list[str], topics: list[str], group: str, settings: dict):
        self.repo, self.env, self.views, self.topics, self.group = repo, env, views, topics, group
        self.metrics_port, self.parallelism = settings["metrics_port"], settings["parallelism"]

    def is_deterministic(self) -> bool:
        return False  # it writes: never folded, reused or called twice by the planner

    def open(self, function_context):
        from kafka import KafkaProducer

        from fs_platform.platform import Platform
        from fs_platform.plugins.flink.metrics import WorkerMetrics
        from fs_platform.plugins.kafka_ingest.config import kafka_client_kwargs, load_ingest_config
        from fs_platform.plugins.kafka_ingest.deadletter import DeadLetters
        from fs_platform.plugins.kafka_ingest.pipeline import TopicPipeline
        from fs_platform.plugins.kafka_ingest.sinks import EventSink

        self.platform = Platform(self.repo, self.env)
        store = self.platform.store
        config = load_ingest_config(self.repo, self.env)
        self.pipes = {}
        for spec in config.topics:
            if spec.topic in self.topics:
                # The job's group names the Delta transactions: the ingestor's under the same group.
                pipe = TopicPipeline(spec, Path(self.repo), store, self.group)
                if pipe.online is not None:  # only the job's views (pipe.offline: the raw events, as is)
                    pipe.online = EventSink(
                        store, [v for v in pipe.views if v.name in self.views], pipe.event_col
                    )
                self.pipes[spec.topic] = pipe
        producer = KafkaProducer(**kafka_client_kwargs(config), linger_ms=5, acks="all")
        self.dlq = DeadLetters(producer, config.dead_letter_topic, config.dead_letter_max_bytes)
        self.metrics = WorkerMetrics(self.metrics_port, self.parallelism, kafka_client_kwargs(config))
        group = function_context.get_metric_group().add_group("fs")
        self.m_applied = group.counter("events_applied")
        self.m_duplicate = group.counter("events_duplicate")
        self.m_dead = group.counter("dead_lettered")
        self._freshness_ms = 0
        group.gauge("freshness_ms", lambda: self._freshness_ms)  # newest record's Kafka time -> written

    def eval(self, topic, partition, offset, ts, key, value):
        n = len(offset)
        status = np.full(n, STATUS_OK, dtype=object)
        if not n:
            return pd.Series(status)
        now = datetime.now(UTC)
        millis = _millis(ts)
        topics, parts, offsets = topic.tolist(), partition.tolist(), offset.tolist()
        keys, values, stamps = key.tolist(), value.tolist(), millis.tolist()
        batches: dict[tuple[str, int], list[int]] = {}  # per (topic, partition), in offset order
        for i, tp in enumerate(zip(topics, parts, strict=True)):
            batches.setdefault(tp, []).append(i)
        appends: dict[str, tuple[list, dict]] = {}  # topic -> its chunks, last offset per partition
        for (t, p), index in batches.items():
            records = [Record(t, p, offsets[i], stamps[i], keys[i], values[i]) for i in index]
            pipe, tp = self.pipes[t], TopicPartition(t, p)
            chunk, bad = pipe.process(tp, records, now, None)
            if chunk.table.num_rows and pipe.online is not None:
                result = pipe.online.write(
                    chunk.table, now, ([f"{t}/{p}"] * chunk.table.num_rows, chunk.offsets)
                )
                self.m_applied.inc(result.written)
                self.m_duplicate.inc(result.skipped_stale)
                self.metrics.online(t, result, chunk.table[pipe.event_col])
            if pipe.offline is not None:
                chunks, through = appends.setdefault(t, ([], {}))
                chunks.append(chunk)
                through[tp] = records[-1].offset
            if bad:
                row = {offsets[i]: i for i in index}
                for record, error in bad:
                    self.dlq.send(record, error)
                    status[row[record.offset]] = error.reason
                self.m_dead.inc(len(bad))
            self.metrics.consumed(tp, records[-1].offset, len(records), [e.reason for _, e in bad])
        for t, (chunks, through) in appends.items():
            # Exactly once: rows at or below the partition's recorded offset (a replay) are dropped.
            self.metrics.offline(t, self.pipes[t].offline.append(chunks, through, now))
        self.dlq.flush(timeout_s=30.0)
        self._freshness_ms = int(time.time() * 1000 - max(stamps))
        return pd.Series(status)

    def close(self):
        self.metrics.close()
        self.dlq.close()
        self.platform.close()


def apply_records(repo: str, env: str, views: list[str], topics: list[str], group: str, settings: dict):
    """``settings``: the job's ``FlinkSettings`` as a dict (the worker reads ``metrics_port``,
    ``parallelism``)."""
    return udf(
        ApplyRecords(repo, env, views, topics, group, settings),
        input_types=[
            DataTypes.STRING(),
            DataTypes.INT(),
            DataTypes.BIGINT(),
            DataTypes.TIMESTAMP_LTZ(3),
            DataTypes.BYTES(),
            DataTypes.BYTES(),
        ],
        result_type=DataTypes.STRING(),
        func_type="pandas",
    )
