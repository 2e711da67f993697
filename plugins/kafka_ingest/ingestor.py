"""``Ingestor``: a Kafka consumer-group member that feeds push sources online and offline.

    ingestor = Ingestor(Platform("feature_repo"), load_ingest_config("feature_repo"))
    stats = ingestor.run()            # until stop() / SIGTERM; returns IngestStats

Delivery (docs/ingest.md): offsets are committed only after every row of the records below them is
written to every target of their topic and their dead letters are acknowledged. Online writes are
idempotent (event-time ordered); Delta appends are exactly-once (sinks.OfflineSink). So a crash at
any point replays at most the uncommitted records, and the replay changes nothing already written.

Threads: the loop (poll, decode, transform, offset commits) runs on the caller's thread; online
writes run on one online writer thread and Delta appends on one Delta writer thread, each with at
most one write in flight, so the loop decodes the next records while Redis applies the last ones and
a slow append never holds up online freshness. A writer only runs the write (with its retries) on
rows the loop handed over; the loop applies its outcome (breaker, stats, the partitions' online or
offline mark), and a partition's offsets are committed only up to what *completed* writes covered.

Rebalances are eager (kafka-python): on revocation what is buffered is dropped (the next owner
replays it, harmlessly); assignment starts clean, replaying ``lookback`` of history through
stateful transforms first so their aggregates come out as if nothing had happened.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from fs_platform import stopping
from fs_platform.observability import span, trace_context
from fs_platform.plugins.kafka_ingest.breaker_log import BreakerLog
from fs_platform.plugins.kafka_ingest.breaker_log import location as breaker_log_location
from fs_platform.plugins.kafka_ingest.clients import dead_letter_producer, group_member
from fs_platform.plugins.kafka_ingest.config import IngestConfig
from fs_platform.plugins.kafka_ingest.deadletter import DeadLetters
from fs_platform.plugins.kafka_ingest.guard import WriteGuard
from fs_platform.plugins.kafka_ingest.heap import freeze_startup_heap, thaw_heap
from fs_platform.plugins.kafka_ingest.metrics import IngestStats
from fs_platform.plugins.kafka_ingest.offsets import Offsets
from fs_platform.plugins.kafka_ingest.pipeline import TopicPipeline
from fs_platform.plugins.kafka_ingest.recorder import Recorder
from fs_platform.plugins.kafka_ingest.server import serve
from fs_platform.plugins.kafka_ingest.warmup import warm_up
from fs_platform.plugins.kafka_ingest.writes import Writers

log = logging.getLogger(__name__)
_IDLE_POLL_MS = 200
_LAG_EVERY_S = 1.0


@dataclass(frozen=True)
class Health:
    status: str  # starting | ok | degraded | stopped
    breakers: dict[str, str]
    assigned: int
    last_poll_age_s: float | None
    stalled: list[str] = field(default_factory=list)  # targets with a write in flight past its deadline

    @property
    def healthy(self) -> bool:
        return self.status == "ok"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, ingestor: Ingestor):
        self._ingestor = ingestor

    def on_partitions_revoked(self, revoked):
        self._ingestor._on_revoked(revoked)

    def on_partitions_assigned(self, assigned):
        self._ingestor._on_assigned(assigned)


class Ingestor:
    def __init__(self, platform, config: IngestConfig):
        self.config = config
        self.platform = platform
        store = platform.store
        group = config.kafka.group_id
        self.pipes = {
            t.topic: TopicPipeline(t, Path(platform.repo_path), store, group) for t in config.topics
        }
        self.recorder = Recorder()
        self.stats = self.recorder.stats
        self.breaker_log = BreakerLog(breaker_log_location(platform))  # transitions kept for fs doctor triage
        self.guard = WriteGuard(config.retry, self.recorder, on_change=self.breaker_log.record)
        self.offsets = Offsets(self.pipes, self.recorder)
        self.writers = Writers(self.guard, self.offsets, self.recorder, config.batch)
        self._rebalance_lock = threading.Lock()
        self._frozen = False  # this run holds the GC freeze (see heap.freeze_startup_heap)
        self._revoked = False  # set by the listener, applied by the main thread
        self._new: set[TopicPartition] = set()  # assigned by the last rebalance, not set up yet
        self._stop = threading.Event()
        self._consumer = None
        self._dlq: DeadLetters | None = None
        self._paused = False
        self._last_poll: float | None = None
        self._running = False
        self._http = None
        self.http_port: int | None = None  # bound port of /metrics and /health while running

    # -- public API ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to drain (write and commit what is buffered) and return. Thread-safe."""
        self._stop.set()

    def health(self) -> Health:
        # Judged from the writes in flight themselves, not from what the loop has noted: degraded as soon
        # as a write runs past its deadline, however the loop is doing.
        stalled = self.writers.stalled()
        if not self._running:
            status = "stopped" if self._last_poll else "starting"
        elif stalled or not self.guard.all_closed():
            status = "degraded"
        else:
            status = "ok" if self.offsets.parts else "starting"
        age = time.monotonic() - self._last_poll if self._last_poll else None
        return Health(status, self.guard.states(), len(self.offsets.parts), age, stalled)

    def run(self, duration_s: float | None = None, install_signal_handlers: bool = False) -> IngestStats:
        """Consume until ``stop()``, SIGTERM/SIGINT (if handlers are installed) or ``duration_s``."""
        unsubscribe = lambda: None  # noqa: E731
        if install_signal_handlers:  # a signal caught before this call (fs.stopping) stops the run at once
            stopping.catch()
            unsubscribe = stopping.on_request(self.stop)
        try:
            if self._stop.is_set():
                log.info("ingestor stopped before it started: nothing consumed")
                return self.stats
            return self._run(duration_s)
        finally:
            unsubscribe()

    def _run(self, duration_s: float | None) -> IngestStats:
        k, b = self.config.kafka, self.config.batch
        self._dlq = DeadLetters(
            dead_letter_producer(self.config),
            self.config.dead_letter_topic,
            self.config.dead_letter_max_bytes,
        )
        self._consumer = group_member(self.config)
        self._consumer.subscribe(list(self.pipes), listener=_Listener(self))
        self.writers.start()
        if self.config.http_port is not None:
            self._http = serve(self, self.config.http_port)
            self.http_port = self._http.server_address[1]
        self._running = True
        deadline = None if duration_s is None else time.monotonic() + duration_s
        log.info("ingestor started: group=%s topics=%s", k.group_id, ",".join(self.pipes))
        next_lag = 0.0
        try:
            freeze_startup_heap()
            self._frozen = True
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                self._backpressure(b.max_buffered_rows)
                batch = self._consumer.poll(timeout_ms=_IDLE_POLL_MS)
                self._last_poll = time.monotonic()
                self._apply_rebalance(batch)
                now = datetime.now(UTC)
                for tp, records in batch.items():
                    self._process(tp, records, now)
                self.writers.watch_deadlines()
                self._flush(force=False, idle=not batch)
                if self._last_poll >= next_lag:
                    self.offsets.report_lag(self._consumer)
                    next_lag = self._last_poll + _LAG_EVERY_S
            self._drain()
        finally:
            self._running = False
            self._close()
        log.info("ingestor stopped: %s", {k: v for k, v in self.stats.to_dict().items() if v})
        return self.stats

    # -- the per-record path ----------------------------------------------------------------------
    def _process(self, tp: TopicPartition, records: list, now: datetime) -> None:
        part = self.offsets.parts.get(tp)
        if part is None or not records:  # revoked in this very poll
            return
        pipe = part.pipe
        topic = tp.topic
        with span(
            "fs.ingest.consume",
            topic=topic,
            partition=tp.partition,
            records=len(records),
            first_offset=records[0].offset,
            last_offset=records[-1].offset,
        ):
            chunk, bad = pipe.process(tp, records, now, part.hook)
            if (ctx := trace_context()) is not None:
                self.writers.hold_trace(pipe, ctx)
        for rec, e in bad:
            self._dlq.send(rec, e)
            self.recorder.dead_lettered(topic, e.reason)
            log.debug("dead-lettered %s[%d]@%d: %s", topic, tp.partition, rec.offset, e)
        last = records[-1].offset
        pipe.buffer(chunk, last)
        part.position = last + 1
        self.recorder.consumed(topic, len(records))

    # -- writes and commits -------------------------------------------------------------------------
    def _flush(self, force: bool, idle: bool = False) -> bool:
        """Write due buffers, then commit what every target has; True if nothing is left pending.
        ``idle``: the last poll returned nothing, so offline rows older than ``offline_idle_ms`` are due.
        ``force`` (drain): write everything, waiting for the writes in flight."""
        clean = self.writers.write_due(list(self.pipes.values()), force, idle)
        self.offsets.commit(self._consumer, self._dlq)
        return (
            clean
            and self.writers.idle()
            and not any(p.online_buffer.through or p.offline_buffer.through for p in self.pipes.values())
        )

    def _drain(self) -> None:
        """After a stop request: keep writing and committing until clean or the drain timeout."""
        deadline = time.monotonic() + self.config.retry.drain_timeout_ms / 1000
        while not self._flush(force=True):
            if time.monotonic() >= deadline:
                log.warning("drain timed out: uncommitted records will be replayed by the next run")
                return
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    # -- flow control and rebalances -----------------------------------------------------------------
    def _backpressure(self, max_rows: int) -> None:
        """Stop fetching (but keep polling, so the member stays in the group) while a breaker is
        open or too many rows wait; resume when both clear."""
        blocked = self.guard.any_open() or any(
            p.pending(*self.writers.rows_in_flight(p)) >= max_rows for p in self.pipes.values()
        )
        assigned = self._consumer.assignment()
        if blocked and not self._paused and assigned:
            self._consumer.pause(*assigned)
            self._paused = True
            log.warning("fetching paused (breaker open or %d rows buffered)", max_rows)
        elif not blocked and self._paused:
            self._consumer.resume(*self._consumer.paused())
            self._paused = False
            log.info("fetching resumed")

    # kafka-python 3 calls the listener on its IO thread, possibly while this thread is between polls:
    # the callbacks only record what happened; the main thread applies it right after poll() returns,
    # so buffers and partition state are never changed under a flush.
    def _on_revoked(self, revoked) -> None:
        with self._rebalance_lock:
            self._revoked = self._revoked or bool(revoked)
            self._new = set()

    def _on_assigned(self, assigned) -> None:
        with self._rebalance_lock:
            self._new = set(assigned)

    def _apply_rebalance(self, batch: dict) -> None:
        with self._rebalance_lock:
            revoked, new = self._revoked, self._new
            self._revoked, self._new = False, set()
        if revoked:
            # Drop what is buffered: the next owner replays it from the last commit; online writes are
            # idempotent and Delta appends skip offsets already recorded, so nothing doubles.
            self.recorder.rebalanced()
            self.writers.generation += 1  # a write in flight still finishes; its marks are dropped
            for pipe in self.pipes.values():
                pipe.clear()
            self.offsets.parts.clear()
            self._paused = False
        if new:
            self._set_up_partitions(new, batch)

    def _set_up_partitions(self, assigned: set, batch: dict) -> None:
        """Partition state for newly assigned partitions (``Offsets.assign``); stateful transforms
        first replay history."""
        warm = self.offsets.assign(assigned, batch, self._consumer)
        if warm:
            warm_up(self.config, warm)
        tps = sorted(assigned)
        log.info(
            "assigned %d partition(s): %s", len(tps), ", ".join(f"{t.topic}[{t.partition}]" for t in tps)
        )

    def _close(self) -> None:
        if self._frozen:
            thaw_heap()
            self._frozen = False
        self.writers.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.offsets.release()
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
        if self._dlq is not None:
            self._dlq.close()
        self.breaker_log.close()
