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

import gc
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from fs_platform import stopping
from fs_platform.errors import TransientError
from fs_platform.observability import span, trace_context
from fs_platform.plugins.kafka_ingest import metrics as m
from fs_platform.plugins.kafka_ingest.breaker_log import BreakerLog
from fs_platform.plugins.kafka_ingest.breaker_log import location as breaker_log_location
from fs_platform.plugins.kafka_ingest.config import IngestConfig, kafka_client_kwargs
from fs_platform.plugins.kafka_ingest.deadletter import DeadLetters
from fs_platform.plugins.kafka_ingest.pipeline import Buffer, TopicPipeline
from fs_platform.plugins.kafka_ingest.resilience import BreakerState, CircuitBreaker, with_retries
from fs_platform.plugins.kafka_ingest.server import serve
from fs_platform.plugins.kafka_ingest.transform import Hook

log = logging.getLogger(__name__)
_IDLE_POLL_MS = 200
_LAG_EVERY_S = 1.0
_COMMIT_TIMEOUT_MS = 5_000
_WARM_IDLE_S = 10
_TRACE_LINKS = (
    32  # consume spans a write keeps with tracing on (its parent, then links); later polls are not linked
)
_frozen_by = 0  # running ingestors in this process that froze the heap
_freeze_lock = threading.Lock()


def _freeze_startup_heap() -> None:
    """Move what is alive at start-up (imported modules, the Feast registry and platform objects,
    ~200k objects) out of the cyclic GC while an ingestor runs. A poll batch's records are alive while
    it is processed, so they get promoted and trigger a full collection every 10-30 s at 5k events/s;
    over the whole heap each took ~150 ms on an idle machine and ~550 ms on a loaded one: a stall of
    the loop, seen in the freshness p99. Frozen, a full collection takes a few ms. Undone by
    :func:`_thaw_heap` when the last running ingestor stops (a notebook's heap is collected again)."""
    global _frozen_by
    with _freeze_lock:
        if _frozen_by == 0:
            gc.collect()
            gc.freeze()
        _frozen_by += 1


def _thaw_heap() -> None:
    global _frozen_by
    with _freeze_lock:
        _frozen_by -= 1
        if _frozen_by == 0:
            gc.unfreeze()


@dataclass
class _Partition:
    pipe: TopicPipeline
    hook: Hook | None
    committed: int = -1  # next offset committed to Kafka
    online_done: int = -1  # last offset whose rows are in the online store
    offline_done: int = -1  # last offset whose rows are in Delta
    position: int = 0  # next offset to process (for the lag gauge)

    def done(self) -> int:
        spec = self.pipe.spec
        marks = ([self.online_done] if spec.online else []) + ([self.offline_done] if spec.offline else [])
        return min(marks)


@dataclass(frozen=True)
class _Outcome:
    """What one write (with its retries) came to; built on whichever thread ran it."""

    result: object
    error: TransientError | None
    retries: int
    seconds: float


@dataclass
class _Append:
    """The Delta append on the writer thread: the buffer it took, and the rebalance generation its
    partition state belongs to (a revocation in the meantime makes its marks moot)."""

    pipe: TopicPipeline
    taken: Buffer
    generation: int
    future: Future
    started: float = field(default_factory=time.monotonic)
    missed: int = 0  # write deadlines it has run past, each counted as a failed write
    traces: list = field(default_factory=list)  # the consume spans of its rows (tracing on)

    def stalled(self, deadline_s: float) -> bool:
        return not self.future.done() and time.monotonic() - self.started >= deadline_s


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
        self.stats = m.IngestStats()
        r = config.retry
        self.breaker_log = BreakerLog(breaker_log_location(platform))  # transitions kept for fs doctor triage
        self.breakers = {
            t: CircuitBreaker(
                t, r.breaker_failures, r.breaker_reset_ms / 1000, on_change=self.breaker_log.record
            )
            for t in ("online", "offline")
        }
        self._deadline_s = {"online": r.online_deadline_ms / 1000, "offline": r.offline_deadline_ms / 1000}
        self._parts: dict[TopicPartition, _Partition] = {}
        self._rebalance_lock = threading.Lock()
        self._generation = 0  # bumped when partitions are revoked
        self._writer: ThreadPoolExecutor | None = None  # the Delta append thread, while running
        self._frozen = False  # this run holds the GC freeze (see _freeze_startup_heap)
        self._append: _Append | None = None  # the append in flight (at most one)
        self._online_writer: ThreadPoolExecutor | None = None  # the online write thread, while running
        self._online: _Append | None = None  # the online write in flight (at most one)
        # Trace contexts of the consume spans whose rows wait in each (target, topic) buffer: the write
        # that takes the buffer is their child (the first) and links the others. Empty when tracing is off.
        self._traces: dict[tuple[str, str], list] = {}
        self._revoked = False  # set by the listener, applied by the main thread
        self._new: set[TopicPartition] = set()  # assigned by the last rebalance, not set up yet
        self._stop = threading.Event()
        self._consumer: KafkaConsumer | None = None
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
        stalled = [
            t
            for t, job in (("online", self._online), ("offline", self._append))
            if job is not None and job.stalled(self._deadline_s[t])
        ]
        if not self._running:
            status = "stopped" if self._last_poll else "starting"
        elif stalled or any(b.state is not BreakerState.CLOSED for b in self.breakers.values()):
            status = "degraded"
        else:
            status = "ok" if self._parts else "starting"
        age = time.monotonic() - self._last_poll if self._last_poll else None
        return Health(
            status,
            {k: b.state.name.lower() for k, b in self.breakers.items()},
            len(self._parts),
            age,
            stalled,
        )

    def run(self, duration_s: float | None = None, install_signal_handlers: bool = False) -> m.IngestStats:
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

    def _run(self, duration_s: float | None) -> m.IngestStats:
        kw = kafka_client_kwargs(self.config)
        k, b = self.config.kafka, self.config.batch
        # max_request_size above the letters' cap (truncation keeps them under it); max_block_ms bounds a
        # send waiting for the dead-letter topic's metadata (a stalled loop otherwise).
        limit = self.config.dead_letter_max_bytes
        producer = KafkaProducer(
            acks="all",
            linger_ms=5,
            max_request_size=max(1_048_576, limit + 65_536),
            max_block_ms=10_000,
            **kw,
        )
        self._dlq = DeadLetters(producer, self.config.dead_letter_topic, limit)
        self._consumer = KafkaConsumer(
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms,
            max_poll_interval_ms=k.max_poll_interval_ms,
            fetch_max_bytes=k.fetch_max_bytes,
            fetch_max_wait_ms=k.fetch_max_wait_ms,
            max_partition_fetch_bytes=min(k.fetch_max_bytes, 4 * 1024 * 1024),
            max_poll_records=k.max_poll_records,
            **kw,
        )
        self._consumer.subscribe(list(self.pipes), listener=_Listener(self))
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fs-ingest-delta")
        self._online_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fs-ingest-online")
        if self.config.http_port is not None:
            self._http = serve(self, self.config.http_port)
            self.http_port = self._http.server_address[1]
        self._running = True
        deadline = None if duration_s is None else time.monotonic() + duration_s
        log.info("ingestor started: group=%s topics=%s", k.group_id, ",".join(self.pipes))
        next_lag = 0.0
        try:
            _freeze_startup_heap()
            self._frozen = True
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                self._backpressure(b.max_buffered_rows)
                batch = self._consumer.poll(timeout_ms=_IDLE_POLL_MS)
                self._last_poll = time.monotonic()
                self._apply_rebalance(batch)
                now = datetime.now(UTC)
                for tp, records in batch.items():
                    self._process(tp, records, now)
                self._watch_deadlines()
                self._flush(force=False, idle=not batch)
                if self._last_poll >= next_lag:
                    self._report_lag()
                    next_lag = self._last_poll + _LAG_EVERY_S
            self._drain()
        finally:
            self._running = False
            self._close()
        log.info("ingestor stopped: %s", {k: v for k, v in self.stats.to_dict().items() if v})
        return self.stats

    # -- the per-record path ----------------------------------------------------------------------
    def _process(self, tp: TopicPartition, records: list, now: datetime) -> None:
        part = self._parts.get(tp)
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
                for target in (t for t in ("online", "offline") if getattr(pipe, t)):
                    if len(held := self._traces.setdefault((target, topic), [])) < _TRACE_LINKS:
                        held.append(ctx)
        for rec, e in bad:
            self._dlq.send(rec, e)
            self.stats.dead_lettered[e.reason] += 1
            m.DEAD_LETTERED.labels(topic, e.reason).inc()
            log.debug("dead-lettered %s[%d]@%d: %s", topic, tp.partition, rec.offset, e)
        last = records[-1].offset
        pipe.buffer(chunk, last)
        part.position = last + 1
        self.stats.consumed += len(records)
        m.CONSUMED.labels(topic).inc(len(records))

    # -- writes and commits -------------------------------------------------------------------------
    def _attempts(self, breaker: CircuitBreaker) -> int:
        return 1 if breaker.state is BreakerState.HALF_OPEN else self.config.retry.attempts

    def _attempt(self, target: str, fn, attempts: int, traces: list = ()) -> _Outcome:
        """Run ``fn`` with retries on transient errors. Any thread: touches no ingestor state.
        ``traces``: the consume spans of the rows written (the first is the write span's parent)."""
        r = self.config.retry
        retries = 0

        def retried(e):
            nonlocal retries
            retries += 1
            m.RETRIES.labels(target).inc()
            log.info("retrying %s write after %s", target, type(e).__name__)

        start = time.perf_counter()
        try:
            with span(f"fs.ingest.write_{target}", parent=traces[0] if traces else None, links=traces[1:]):
                result = with_retries(
                    fn,
                    attempts=attempts,
                    base_s=r.backoff_base_ms / 1000,
                    cap_s=r.backoff_max_ms / 1000,
                    on_retry=retried,
                    deadline=time.monotonic() + self._deadline_s[target],
                )
        except TransientError as e:
            return _Outcome(None, e, retries, time.perf_counter() - start)
        return _Outcome(result, None, retries, time.perf_counter() - start)

    def _settle(self, target: str, outcome: _Outcome, missed: int = 0):
        """Apply a write's outcome to the breaker and stats (loop thread); its result, None if it failed.
        ``missed``: deadlines the write ran past, already counted as failures."""
        breaker = self.breakers[target]
        self.stats.write_retries += outcome.retries
        if outcome.error is not None:
            if not missed:
                self._failed(target)
            log.warning("%s write failed: %s", target, outcome.error.message)
            return None
        breaker.success()
        m.BREAKER.labels(target).set(breaker.state.value)
        m.BATCH_SECONDS.labels(target).observe(outcome.seconds)
        return outcome.result

    def _failed(self, target: str) -> None:
        breaker = self.breakers[target]
        before = breaker.opened
        breaker.failure()
        self.stats.breaker_opened += breaker.opened - before
        m.BREAKER.labels(target).set(breaker.state.value)

    def _watch_deadlines(self) -> None:
        """Count each write deadline a write in flight has run past as one failed write of its target:
        a hung target (which holds its writer thread) opens the breaker after ``breaker_failures``
        deadlines instead of after its client's timeouts and retries have all run out."""
        now = time.monotonic()
        for target, job in (("online", self._online), ("offline", self._append)):
            if job is None or job.future.done():
                continue
            due = int((now - job.started) / self._deadline_s[target])
            if due > job.missed and not job.missed:
                log.warning(
                    "%s write unfinished after its %.1f s deadline: counted as failed",
                    target,
                    self._deadline_s[target],
                )
            while job.missed < due:
                job.missed += 1
                self._failed(target)

    def _flush(self, force: bool, idle: bool = False) -> bool:
        """Write due buffers, then commit what every target has; True if nothing is left pending.
        ``idle``: the last poll returned nothing, so offline rows older than ``offline_idle_ms`` are due.
        ``force`` (drain): write everything, waiting for the writes in flight."""
        b = self.config.batch
        clean = self._reap_online(wait=force)
        self._reap(wait=force)
        now = time.monotonic()
        idle_s = b.offline_idle_ms / 1000 if idle and b.offline_idle_ms else None
        if force:
            for pipe in self.pipes.values():
                if pipe.online:
                    self._start_online(pipe)
                    clean &= self._reap_online(wait=True)
            for pipe in self.pipes.values():
                if pipe.offline:
                    self._start_append(pipe)
                    self._reap(wait=True)
        else:
            if self._online is None:  # one online write at a time: the longest-waiting topic first
                due = [
                    p
                    for p in self.pipes.values()
                    if p.online and p.online_buffer.due(b.online_max_rows, b.online_interval_ms / 1000, now)
                ]
                if due:
                    self._start_online(min(due, key=lambda p: p.online_buffer.since))
            if self._append is None:
                due = [
                    p
                    for p in self.pipes.values()
                    if p.offline
                    and (
                        p.offline_buffer.due(b.offline_max_rows, b.offline_interval_ms / 1000, now)
                        or (idle_s is not None and p.offline_buffer.due(b.offline_max_rows, idle_s, now))
                    )
                ]
                if due:  # one append at a time: the topic whose rows have waited longest goes first
                    self._start_append(min(due, key=lambda p: p.offline_buffer.since))
        self._commit()
        return (
            clean
            and self._append is None
            and self._online is None
            and not any(p.online_buffer.through or p.offline_buffer.through for p in self.pipes.values())
        )

    def _hand_over(self, buf: Buffer, target: str) -> Buffer | None:
        """The whole buffer to write to ``target`` (rows and the offsets they run to, one snapshot), or
        None: nothing pending, only dead letters or filtered records (marked done at once), or the
        target's breaker refuses."""
        if not buf.through:
            return None
        if not buf.n:
            self._mark(buf.take(), f"{target}_done")
            return None
        if not self.breakers[target].allow():
            return None
        return buf.take()

    def _start_online(self, pipe: TopicPipeline) -> None:
        """Hand the online buffer to the online writer thread (none may be in flight), so the loop
        decodes the next records while Redis applies these (it runs on another core). Taken whole,
        like an append: its rows and the offsets it covers are one snapshot."""
        taken = self._hand_over(pipe.online_buffer, "online")
        if taken is None:
            return
        breaker, when = self.breakers["online"], datetime.now(UTC)
        table, sink = taken.table(), pipe.online
        origins = taken.origins() if pipe.aggregating else None

        def write():
            return sink.write(table, when, origins), time.time()

        traces = self._traces.pop(("online", pipe.spec.topic), [])
        future = self._online_writer.submit(self._attempt, "online", write, self._attempts(breaker), traces)
        self._online = _Append(pipe, taken, self._generation, future, traces=traces)

    def _retrace(self, target: str, job: _Append) -> None:
        """Rows put back after a failed write keep their consume spans for the write that retries them."""
        if job.traces:
            key = (target, job.pipe.spec.topic)
            self._traces[key] = (job.traces + self._traces.get(key, []))[:_TRACE_LINKS]

    def _reap_online(self, wait: bool) -> bool:
        """Apply the outcome of the online write in flight once it is done (``wait``: block until it
        is): success marks its offsets as online, a failure puts its rows back in front of the buffer.
        False if it failed. A terminal error is raised here."""
        job = self._online
        if job is None or (not wait and not job.future.done()):
            return True
        self._online = None
        outcome = self._settle("online", job.future.result(), job.missed)
        current = job.generation == self._generation
        if outcome is None:
            if current:
                job.pipe.online_buffer.restore(job.taken)
                self._retrace("online", job)
            return False
        result, written_at = outcome
        pipe, table = job.pipe, job.taken.table()
        topic = pipe.spec.topic
        ages = written_at - table[pipe.event_col].cast(pa.int64()).to_numpy() / 1e6
        m.observe_many(m.FRESHNESS.labels(topic), ages)
        self.stats.freshness_s.extend(ages.tolist())
        self.stats.written_online += result.written
        self.stats.skipped_stale += result.skipped_stale
        self.stats.online_batches += 1
        m.WRITTEN.labels(topic, "online").inc(result.written)
        m.SKIPPED_STALE.labels(topic).inc(result.skipped_stale)
        if current:  # after a revocation the partitions restart from their commits anyway
            self._mark(job.taken, "online_done")
        return True

    def _start_append(self, pipe: TopicPipeline) -> None:
        """Hand the offline buffer to the writer thread (none may be in flight). The buffer is taken
        whole, so the append's rows and the offsets it records (``through``) are one snapshot; the
        loop goes on filling a fresh buffer."""
        taken = self._hand_over(pipe.offline_buffer, "offline")
        if taken is None:
            return
        breaker, when = self.breakers["offline"], datetime.now(UTC)
        chunks, through, sink = taken.chunks, dict(taken.through), pipe.offline
        traces = self._traces.pop(("offline", pipe.spec.topic), [])
        future = self._writer.submit(
            self._attempt,
            "offline",
            lambda: sink.append(chunks, through, when),
            self._attempts(breaker),
            traces,
        )
        self._append = _Append(pipe, taken, self._generation, future, traces=traces)

    def _reap(self, wait: bool) -> None:
        """Apply the outcome of the append in flight once it is done (``wait``: block until it is).
        Success marks its partitions' offsets as in Delta; a failure puts its rows back in front of
        the buffer, to be retried with what came since. A terminal error is raised here."""
        job = self._append
        if job is None or (not wait and not job.future.done()):
            return
        self._append = None
        result = self._settle("offline", job.future.result(), job.missed)
        current = job.generation == self._generation
        if result is None:
            if current:
                job.pipe.offline_buffer.restore(job.taken)
                self._retrace("offline", job)
            return
        topic = job.pipe.spec.topic
        self.stats.written_offline += result.written
        self.stats.skipped_duplicate += result.skipped_duplicate
        self.stats.offline_commits += 1 if result.written else 0
        m.WRITTEN.labels(topic, "offline").inc(result.written)
        m.SKIPPED_DUPLICATE.labels(topic).inc(result.skipped_duplicate)
        if current:  # after a revocation the partitions restart from their commits anyway
            self._mark(job.taken, "offline_done")

    def _mark(self, taken: Buffer, attr: str) -> None:
        log.debug(
            "%s through %s (%d rows)",
            attr,
            {f"{t.topic}[{t.partition}]": o for t, o in taken.through.items()},
            taken.n,
        )
        for tp, offset in taken.through.items():
            part = self._parts.get(tp)
            if part is not None:
                setattr(part, attr, offset)

    def _commit(self, only: set | None = None) -> None:
        offsets = {}
        for tp, part in self._parts.items():
            nxt = part.done() + 1
            if nxt > part.committed and (only is None or tp in only):
                offsets[tp] = OffsetAndMetadata(nxt, "", -1)
        if not offsets:
            return
        try:
            # Dead letters must be durable before the offsets that skip their records.
            self.stats.parked += self._dlq.flush(timeout_s=10)
            # Bounded: kafka-python retries a commit during a rebalance until it succeeds, and the
            # rebalance itself needs this thread back in poll().
            self._consumer.commit(offsets, timeout_ms=_COMMIT_TIMEOUT_MS)
        except CommitFailedError:
            log.warning(
                "offset commit rejected (group rebalanced); the new owner replays from the last commit"
            )
            return
        except (KafkaError, TransientError) as e:
            log.warning("offset commit failed, will retry: %s", type(e).__name__)
            return
        for tp, om in offsets.items():
            self._parts[tp].committed = om.offset
        self.stats.offset_commits += 1
        log.debug("committed %s", {f"{tp.topic}[{tp.partition}]": om.offset for tp, om in offsets.items()})

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

        def in_flight(job, p) -> int:
            return job.taken.n if job is not None and job.pipe is p else 0

        blocked = any(b.state is BreakerState.OPEN for b in self.breakers.values()) or any(
            p.pending(in_flight(self._append, p), in_flight(self._online, p)) >= max_rows
            for p in self.pipes.values()
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
            self.stats.rebalances += 1
            self._generation += 1  # an append in flight still finishes; its marks are dropped
            for pipe in self.pipes.values():
                pipe.clear()
            self._parts.clear()
            self._paused = False
        if new:
            self._set_up_partitions(new, batch)

    def _set_up_partitions(self, assigned: set, batch: dict) -> None:
        """Partition state for newly assigned partitions; stateful transforms first replay history.

        Every partition restarts at its committed offset: kafka-python keeps the fetch position of a
        partition that stays assigned across an eager rebalance, but its buffered rows were dropped,
        so continuing from there would leave a gap. Records this poll returned for it are refetched.
        """
        tps = sorted(assigned)
        warm: dict[TopicPartition, tuple[_Partition, int]] = {}
        for tp in tps:
            pipe = self.pipes[tp.topic]
            part = _Partition(pipe, pipe.new_hook())
            committed = self._consumer.committed(tp)
            # Offset 0 below the log start falls back to auto_offset_reset=earliest.
            self._consumer.seek(tp, committed or 0)
            batch.pop(tp, None)
            if committed is None:  # a new group starts at the earliest offset (nothing skipped)
                part.committed = 0
            else:
                part.committed = part.position = committed
                part.online_done = part.offline_done = committed - 1
                if pipe.transform is not None and pipe.transform.stateful and committed > 0:
                    warm[tp] = (part, committed)
            self._parts[tp] = part
        if warm:
            self._warm_up(warm)
        log.info(
            "assigned %d partition(s): %s", len(tps), ", ".join(f"{t.topic}[{t.partition}]" for t in tps)
        )

    def _warm_up(self, warm: dict) -> None:
        """Replay ``[log start, committed)`` of each partition through its fresh transform, writing
        nothing. A separate group-less reader does it, so the member's own positions stay at the
        committed offsets. Records older (broker timestamp) than the transform's lookback are skipped."""
        reader = KafkaConsumer(
            enable_auto_commit=False,
            max_poll_records=self.config.kafka.max_poll_records,
            fetch_max_wait_ms=self.config.kafka.fetch_max_wait_ms,
            **kafka_client_kwargs(self.config),
        )
        now, now_ms = datetime.now(UTC), int(time.time() * 1000)
        try:
            reader.assign(list(warm))
            reader.seek_to_beginning(*warm)
            left = {tp for tp, (_, until) in warm.items() if reader.position(tp) < until}
            replayed, idle_since = 0, time.monotonic()
            while left and time.monotonic() - idle_since < _WARM_IDLE_S:
                for tp, records in reader.poll(timeout_ms=500).items():
                    part, until = warm[tp]
                    lookback = part.pipe.transform.lookback
                    since_ms = now_ms - int(lookback.total_seconds() * 1000) if lookback else 0
                    below = [rec for rec in records if rec.offset < until]
                    if len(below) < len(records):
                        left.discard(tp)
                    replay = [rec for rec in below if rec.timestamp >= since_ms]
                    if replay:  # rows and dead letters are dropped: only the transform's state matters
                        part.pipe.process(tp, replay, now, part.hook, gate=False)
                    replayed += len(below)
                    if records and records[-1].offset + 1 >= until:
                        left.discard(tp)
                    idle_since = time.monotonic()
            if left:
                log.warning(
                    "warm-up of %d partition(s) stopped early: no data for %ds", len(left), _WARM_IDLE_S
                )
            log.info("warm-up replayed %d record(s) into stateful transforms", replayed)
        finally:
            reader.close(autocommit=False)

    def _report_lag(self) -> None:
        # The high watermark of the last fetch response (end_offsets() may under-report on some brokers).
        for tp, part in self._parts.items():
            high = self._consumer.highwater(tp)
            if high is not None:
                m.LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - part.position))

    def _close(self) -> None:
        if self._frozen:
            _thaw_heap()
            self._frozen = False
        if self._writer is not None:  # let an append in flight finish (its rows are skipped on replay)
            self._writer.shutdown(wait=True, cancel_futures=True)
            self._writer, self._append = None, None
        if self._online_writer is not None:  # likewise an online write (replayed rows are no-ops)
            self._online_writer.shutdown(wait=True, cancel_futures=True)
            self._online_writer, self._online = None, None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for tp in self._parts:
            try:
                m.LAG.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass
        self._parts.clear()
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
        if self._dlq is not None:
            self._dlq.close()
        self.breaker_log.close()
