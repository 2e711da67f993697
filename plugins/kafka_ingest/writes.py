"""``Writers``: the online writer thread and the Delta writer thread of an ingestor.

Each runs at most one write at a time, on rows the loop handed over (a buffer taken whole: its rows
and the offsets they cover are one snapshot), with the retries and deadline of its ``WriteGuard``.
The loop applies a write's outcome when it is done (``reap``): success marks its partitions' offsets
as written to that target; a failure puts its rows back in front of the buffer, to be retried with
what came since.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from fs_platform.plugins.kafka_ingest.buffers import Buffer
from fs_platform.plugins.kafka_ingest.config import BatchSettings
from fs_platform.plugins.kafka_ingest.guard import WriteGuard
from fs_platform.plugins.kafka_ingest.offsets import Offsets
from fs_platform.plugins.kafka_ingest.pipeline import TopicPipeline
from fs_platform.plugins.kafka_ingest.recorder import Recorder

log = logging.getLogger(__name__)
# Consume spans a write keeps with tracing on (its parent, then links); later polls are not linked.
_TRACE_LINKS = 32


@dataclass
class Write:
    """A write on its writer thread: the buffer it took, and the rebalance generation its
    partition state belongs to (a revocation in the meantime makes its marks moot)."""

    pipe: TopicPipeline
    taken: Buffer
    generation: int
    future: Future
    started: float = field(default_factory=time.monotonic)
    missed: int = 0  # write deadlines it has run past, each counted as a failed write
    beat: list = field(default_factory=lambda: [time.monotonic()])  # [its last answer from the target]
    silent_from: float = 0.0  # the beat its current silence began at ...
    silent_counted: int = 0  # ... and the deadlines of that silence counted as failures
    traces: list = field(default_factory=list)  # the consume spans of its rows (tracing on)

    def silent_s(self) -> float:
        """Seconds since the write last heard from its target (since it started, if never)."""
        return time.monotonic() - self.beat[0]

    def stalled(self, deadline_s: float) -> bool:
        return not self.future.done() and self.silent_s() >= deadline_s


class Writers:
    """Starts due writes and applies their outcomes; loop thread only (the writes run on theirs)."""

    def __init__(self, guard: WriteGuard, offsets: Offsets, recorder: Recorder, batch: BatchSettings):
        self._guard = guard
        self._offsets = offsets
        self._recorder = recorder
        self._batch = batch
        self.generation = 0  # bumped when partitions are revoked
        self._delta_thread: ThreadPoolExecutor | None = None  # the Delta append thread, while running
        self._online_thread: ThreadPoolExecutor | None = None  # the online write thread, while running
        self.online: Write | None = None  # the online write in flight (at most one)
        self.offline: Write | None = None  # the Delta append in flight (at most one)
        # Trace contexts of the consume spans whose rows wait in each (target, topic) buffer: the write
        # that takes the buffer is their child (the first) and links the others. Empty when tracing is off.
        self._traces: dict[tuple[str, str], list] = {}

    def start(self) -> None:
        self._delta_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fs-ingest-delta")
        self._online_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fs-ingest-online")

    def close(self) -> None:
        if self._delta_thread is not None:  # let an append in flight finish (its rows are skipped on replay)
            self._delta_thread.shutdown(wait=True, cancel_futures=True)
            self._delta_thread, self.offline = None, None
        if self._online_thread is not None:  # likewise an online write (replayed rows are no-ops)
            self._online_thread.shutdown(wait=True, cancel_futures=True)
            self._online_thread, self.online = None, None

    def hold_trace(self, pipe: TopicPipeline, ctx) -> None:
        """Keep a consume span's context for the writes that will take its rows."""
        for target in (t for t in ("online", "offline") if getattr(pipe, t)):
            if len(held := self._traces.setdefault((target, pipe.spec.topic), [])) < _TRACE_LINKS:
                held.append(ctx)

    def idle(self) -> bool:
        return self.online is None and self.offline is None

    def stalled(self) -> list[str]:
        """Targets with a write in flight past its deadline (read from any thread)."""
        return [
            t
            for t, job in (("online", self.online), ("offline", self.offline))
            if job is not None and job.stalled(self._guard.deadline_s[t])
        ]

    def rows_in_flight(self, pipe: TopicPipeline) -> tuple[int, int]:
        """Rows of ``pipe`` being written: (to Delta, online)."""

        def in_flight(job) -> int:
            return job.taken.n if job is not None and job.pipe is pipe else 0

        return in_flight(self.offline), in_flight(self.online)

    def watch_deadlines(self) -> None:
        """Count each write deadline a write in flight has gone without an answer from its target as
        one failed write of that target: a hung target (which holds its writer thread) opens the breaker
        after ``breaker_failures`` deadlines instead of after its client's timeouts and retries have all
        run out. An online write answers after each round trip, so a long one (a backlog) that keeps
        answering is not counted; a Delta append answers once, at its end."""
        for target, job in (("online", self.online), ("offline", self.offline)):
            if job is None or job.future.done():
                continue
            deadline_s = self._guard.deadline_s[target]
            if job.silent_from != job.beat[0]:  # it answered since the last look: a new silence
                job.silent_from, job.silent_counted = job.beat[0], 0
            due = int(job.silent_s() / deadline_s)
            if due and not job.silent_counted:
                log.warning(
                    "%s write without an answer for its %.1f s deadline: counted as failed",
                    target,
                    deadline_s,
                )
            while job.silent_counted < due:
                job.silent_counted += 1
                job.missed += 1
                self._guard.failed(target)

    def write_due(self, pipes: list[TopicPipeline], force: bool, idle: bool) -> bool:
        """Apply the outcomes of finished writes and start due ones; False if an online write failed.
        ``idle``: the last poll returned nothing, so offline rows older than ``offline_idle_ms`` are due.
        ``force`` (drain): write everything, waiting for the writes in flight."""
        b = self._batch
        clean = self._reap_online(wait=force)
        self._reap(wait=force)
        now = time.monotonic()
        idle_s = b.offline_idle_ms / 1000 if idle and b.offline_idle_ms else None
        if force:
            for pipe in pipes:
                while pipe.online:  # a backlog goes in pieces (online_write_max_rows): all of them
                    self._start_online(pipe)
                    if self.online is None:
                        break
                    ok = self._reap_online(wait=True)
                    clean &= ok
                    if not ok or not pipe.online_buffer.n:
                        break
            for pipe in pipes:
                if pipe.offline:
                    self._start_append(pipe)
                    self._reap(wait=True)
            return clean
        if self.online is None:  # one online write at a time: the longest-waiting topic first
            due = [
                p
                for p in pipes
                if p.online and p.online_buffer.due(b.online_max_rows, b.online_interval_ms / 1000, now)
            ]
            if due:
                self._start_online(min(due, key=lambda p: p.online_buffer.since))
        if self.offline is None:
            due = [
                p
                for p in pipes
                if p.offline
                and (
                    p.offline_buffer.due(b.offline_max_rows, b.offline_interval_ms / 1000, now)
                    or (idle_s is not None and p.offline_buffer.due(b.offline_max_rows, idle_s, now))
                )
            ]
            if due:  # one append at a time: the topic whose rows have waited longest goes first
                self._start_append(min(due, key=lambda p: p.offline_buffer.since))
        return clean

    def _hand_over(self, buf: Buffer, target: str, max_rows: int | None = None) -> Buffer | None:
        """The buffer (or its oldest ``max_rows`` rows) to write to ``target``: rows and the offsets they
        run to, one snapshot; or None: nothing pending, only dead letters or filtered records (marked
        done at once), or the target's breaker refuses."""
        if not buf.through:
            return None
        if not buf.n:
            self._offsets.mark(buf.take(), f"{target}_done")
            return None
        if not self._guard.allow(target):
            return None
        return buf.take(max_rows)

    def _start_online(self, pipe: TopicPipeline) -> None:
        """Pack the online buffer's rows and hand them to the online writer thread (none may be in
        flight), so the loop decodes the next records while Redis applies these (it runs on another
        core)."""
        taken = self._hand_over(pipe.online_buffer, "online", self._batch.online_write_max_rows)
        if taken is None:
            return
        when = datetime.now(UTC)
        table, sink = taken.table(), pipe.online
        origins = taken.origins() if pipe.aggregating else None
        beat = [time.monotonic()]

        def answered():
            beat[0] = time.monotonic()

        try:  # packing here, where the loop holds the GIL anyway (see tile_events.EventWrite)
            send = sink.prepare(table, when, origins)
        except Exception as e:  # raised on the writer thread, where a write's errors are handled

            def send(progress=None, error=e):
                raise error

        def write():
            return send(answered), time.time()

        traces = self._traces.pop(("online", pipe.spec.topic), [])
        attempts = self._guard.attempts("online")
        future = self._online_thread.submit(self._guard.attempt, "online", write, attempts, traces)
        self.online = Write(pipe, taken, self.generation, future, traces=traces, beat=beat)

    def _retrace(self, target: str, job: Write) -> None:
        """Rows put back after a failed write keep their consume spans for the write that retries them."""
        if job.traces:
            key = (target, job.pipe.spec.topic)
            self._traces[key] = (job.traces + self._traces.get(key, []))[:_TRACE_LINKS]

    def _reap_online(self, wait: bool) -> bool:
        """Apply the outcome of the online write in flight once it is done (``wait``: block until it
        is): success marks its offsets as online, a failure puts its rows back in front of the buffer.
        False if it failed. A terminal error is raised here."""
        job = self.online
        if job is None or (not wait and not job.future.done()):
            return True
        self.online = None
        outcome = self._guard.settle("online", job.future.result(), job.missed)
        current = job.generation == self.generation
        if outcome is None:
            if current:
                job.pipe.online_buffer.restore(job.taken)
                self._retrace("online", job)
            return False
        result, written_at = outcome
        pipe, table = job.pipe, job.taken.table()
        ages = written_at - table[pipe.event_col].cast(pa.int64()).to_numpy() / 1e6
        self._recorder.written_online(pipe.spec.topic, result, ages)
        if current:  # after a revocation the partitions restart from their commits anyway
            self._offsets.mark(job.taken, "online_done")
        return True

    def _start_append(self, pipe: TopicPipeline) -> None:
        """Hand the offline buffer to the Delta writer thread (none may be in flight); the append
        records the offsets its rows run to (``through``), so a replay skips them."""
        taken = self._hand_over(pipe.offline_buffer, "offline")
        if taken is None:
            return
        when = datetime.now(UTC)
        chunks, through, sink = taken.chunks, dict(taken.through), pipe.offline
        traces = self._traces.pop(("offline", pipe.spec.topic), [])
        future = self._delta_thread.submit(
            self._guard.attempt,
            "offline",
            lambda: sink.append(chunks, through, when),
            self._guard.attempts("offline"),
            traces,
        )
        self.offline = Write(pipe, taken, self.generation, future, traces=traces)

    def _reap(self, wait: bool) -> None:
        """Apply the outcome of the append in flight once it is done (``wait``: block until it is),
        like ``_reap_online``."""
        job = self.offline
        if job is None or (not wait and not job.future.done()):
            return
        self.offline = None
        result = self._guard.settle("offline", job.future.result(), job.missed)
        current = job.generation == self.generation
        if result is None:
            if current:
                job.pipe.offline_buffer.restore(job.taken)
                self._retrace("offline", job)
            return
        self._recorder.written_offline(job.pipe.spec.topic, result)
        if current:  # after a revocation the partitions restart from their commits anyway
            self._offsets.mark(job.taken, "offline_done")
