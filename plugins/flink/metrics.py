"""The ingestor's Prometheus metrics and ``/health`` from the Flink job's Python worker (docs/flink.md).

Each batch updates the ingestor's metrics (``kafka_ingest.metrics`` on the platform registry: records
consumed, rows written per target, skipped, dead-lettered, freshness, lag), so dashboards and alerts
work on either engine. With ``metrics_port`` set, each subtask's worker serves them with the
ingestor's endpoint (``kafka_ingest.server.serve``: ``/metrics``, ``/health``) on the first free port of
``metrics_port .. metrics_port + parallelism - 1`` (a Table API function does not know its subtask).

Lag: the Kafka source is Java, so the worker has no consumer to ask; a thread asks the broker for the
end offsets of the partitions this subtask has read, every ``LAG_INTERVAL_S``. Checkpoint duration and
restarts are Flink's own metrics (``flink_metrics_port``: Flink's Prometheus reporter)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pyarrow as pa

from fs_platform.plugins.kafka_ingest import metrics as m

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 5.0
STALE_AFTER_S = 300.0  # no batch for this long while lagging: /health says degraded


class WorkerMetrics:
    """One Python worker's metrics; the endpoint and the lag thread only with a ``port``."""

    def __init__(self, port: int | None, parallelism: int, kafka_kwargs: dict):
        self._position: dict = {}  # TopicPartition -> next offset to read
        self._lag: dict = {}  # TopicPartition -> last lag seen
        self._last_batch: float | None = None
        self._stop = threading.Event()
        self._server = None
        if port is None:
            return
        from fs_platform.plugins.kafka_ingest.server import serve

        for candidate in range(port, port + parallelism):
            try:
                self._server = serve(self, candidate)
            except OSError:  # another subtask's
                continue
            log.info("metrics and health on port %d", candidate)
            break
        else:  # e.g. a restarted task whose previous worker still holds its port
            log.warning("no metrics endpoint: ports %d-%d are taken", port, port + parallelism - 1)
            return
        threading.Thread(
            target=self._poll_lag, args=(kafka_kwargs,), name="fs-flink-lag", daemon=True
        ).start()

    def consumed(self, tp, last_offset: int, n: int, dead_letter_reasons: list[str]) -> None:
        self._position[tp] = last_offset + 1
        self._last_batch = time.monotonic()
        m.CONSUMED.labels(tp.topic).inc(n)
        for reason, count in Counter(dead_letter_reasons).items():
            m.DEAD_LETTERED.labels(tp.topic, reason).inc(count)

    def online(self, topic: str, result, event_times: pa.ChunkedArray) -> None:
        ages = time.time() - event_times.cast(pa.int64()).to_numpy() / 1e6
        m.observe_many(m.FRESHNESS.labels(topic), ages)
        m.WRITTEN.labels(topic, "online").inc(result.written)
        m.SKIPPED_STALE.labels(topic).inc(result.skipped_stale)

    def offline(self, topic: str, result) -> None:
        m.WRITTEN.labels(topic, "offline").inc(result.written)
        m.SKIPPED_DUPLICATE.labels(topic).inc(result.skipped_duplicate)

    def health(self):
        """The ingestor's health fields: ``ok`` once a batch was read, unless records wait and none was
        read for ``STALE_AFTER_S`` (a Python worker that stopped while the source still runs)."""
        from fs_platform.plugins.kafka_ingest import Health

        age = None if self._last_batch is None else time.monotonic() - self._last_batch
        if age is None:
            status = "starting"
        elif age > STALE_AFTER_S and any(self._lag.values()):
            status = "degraded"
        else:
            status = "ok"
        return Health(status, {}, len(self._position), age)

    def _poll_lag(self, kafka_kwargs: dict) -> None:
        from kafka import KafkaConsumer

        consumer = None
        while not self._stop.wait(LAG_INTERVAL_S):
            positions = dict(self._position)
            if not positions:
                continue
            try:
                consumer = consumer or KafkaConsumer(**kafka_kwargs, enable_auto_commit=False)
                ends = consumer.end_offsets(list(positions))
            except Exception as e:  # the broker is away: keep the last values, try again
                log.debug("lag not read: %s", e)
                continue
            for tp, end in ends.items():
                # max(0, ...): some brokers (tansu) under-report the end offset.
                self._lag[tp] = max(0, end - positions[tp])
                m.LAG.labels(tp.topic, str(tp.partition)).set(self._lag[tp])
        if consumer is not None:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
