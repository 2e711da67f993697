"""``Recorder``: every count of an ingestor run goes to its ``IngestStats`` (what ``run()`` returns)
and to the matching Prometheus metric (``metrics.py``) in one call, so the two cannot drift apart."""

from __future__ import annotations

import numpy as np

from fs_platform.plugins.kafka_ingest import metrics as m
from fs_platform.plugins.kafka_ingest.resilience import CircuitBreaker


class Recorder:
    """Loop thread only, except ``retrying`` (any thread: it touches no stats)."""

    def __init__(self):
        self.stats = m.IngestStats()

    def consumed(self, topic: str, records: int) -> None:
        self.stats.consumed += records
        m.CONSUMED.labels(topic).inc(records)

    def dead_lettered(self, topic: str, reason: str) -> None:
        self.stats.dead_lettered[reason] += 1
        m.DEAD_LETTERED.labels(topic, reason).inc()

    def parked(self, records: int) -> None:
        """Bad records whose dead letter was not taken (``DeadLetters`` counts their metric)."""
        self.stats.parked += records

    def retrying(self, target: str) -> None:
        """A write retried on its writer thread; the run's count is added when the write settles."""
        m.RETRIES.labels(target).inc()

    def settled(self, target: str, retries: int, seconds: float | None) -> None:
        """A write's retries; ``seconds``: how long it took, if it succeeded."""
        self.stats.write_retries += retries
        if seconds is not None:
            m.BATCH_SECONDS.labels(target).observe(seconds)

    def breaker(self, target: str, breaker: CircuitBreaker, opened_before: int | None = None) -> None:
        """The breaker's state; ``opened_before``: its open count before a failure, to count openings."""
        if opened_before is not None:
            self.stats.breaker_opened += breaker.opened - opened_before
        m.BREAKER.labels(target).set(breaker.state.value)

    def written_online(self, topic: str, result, ages: np.ndarray) -> None:
        """An online write: ``result`` (written and skipped-stale rows) and each row's freshness."""
        m.observe_many(m.FRESHNESS.labels(topic), ages)
        self.stats.freshness_s.extend(ages.tolist())
        self.stats.written_online += result.written
        self.stats.skipped_stale += result.skipped_stale
        self.stats.online_batches += 1
        m.WRITTEN.labels(topic, "online").inc(result.written)
        m.SKIPPED_STALE.labels(topic).inc(result.skipped_stale)

    def written_offline(self, topic: str, result) -> None:
        """A Delta append: ``result`` (appended rows, and rows whose offsets were already there)."""
        self.stats.written_offline += result.written
        self.stats.skipped_duplicate += result.skipped_duplicate
        self.stats.offline_commits += 1 if result.written else 0
        m.WRITTEN.labels(topic, "offline").inc(result.written)
        m.SKIPPED_DUPLICATE.labels(topic).inc(result.skipped_duplicate)

    def offsets_committed(self) -> None:
        self.stats.offset_commits += 1

    def rebalanced(self) -> None:
        self.stats.rebalances += 1

    def lag(self, topic: str, partition: int, records: int) -> None:
        m.LAG.labels(topic, str(partition)).set(records)

    def forget_lag(self, topic: str, partition: int) -> None:
        """Drop the gauge of a partition this process no longer reads."""
        try:
            m.LAG.remove(topic, str(partition))
        except KeyError:
            pass
