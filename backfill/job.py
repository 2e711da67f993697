"""One backfill or materialization run (``Job``): executes its planned chunks, optionally in parallel,
records every state change on the ledger and reports progress. ``Backfiller`` (runner.py) plans and
leases; this module schedules each chunk's work (chunk_phases.py: compute, check, commit offline then
online)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import datetime
from typing import TYPE_CHECKING

from fs_platform.backfill import offline
from fs_platform.backfill.chunk_phases import commit_offline, commit_online
from fs_platform.backfill.lease import Lease
from fs_platform.backfill.model import (
    BackfillPlan,
    BackfillResult,
    ChunkResult,
    Interval,
    Kind,
    LedgerEntry,
    PlannedChunk,
    Status,
    Target,
)
from fs_platform.backfill.reporting import Progress, ProgressEvent, emit_metrics, failure_message
from fs_platform.observability import span
from fs_platform.plugins.delta.tables import resolve_location
from fs_platform.timeutil import utcnow
from fs_platform.views import feature_view

if TYPE_CHECKING:
    from fs_platform.backfill.runner import Backfiller

log = logging.getLogger(__name__)

Group = tuple[Interval, list[PlannedChunk]]  # one interval's planned chunks (one per target)


class Job:
    """One run: executes chunks (optionally in parallel) and records each state change."""

    def __init__(
        self,
        bf: Backfiller,
        plan: BackfillPlan,
        run_id: str,
        holder: str,
        lease: Lease,
        result: BackfillResult,
        progress: Progress | None,
        started_at: datetime,
        allow_shrink: bool = False,
    ):
        self.bf, self.plan, self.run_id, self.holder, self.lease = bf, plan, run_id, holder, lease
        self.allow_shrink = allow_shrink
        # Backfills stamp online rows' created time with the run's start, so a correction at an
        # unchanged event time wins over the stored row (newer stream events still win on event time).
        self.created_override = started_at if plan.kind == Kind.BACKFILL else None
        self.result = result
        self.progress = progress
        self.view = feature_view(bf.store, plan.view)
        self.definition = bf.definition(plan.view) if Target.OFFLINE in plan.targets else None
        self.location = resolve_location(self.view, bf.store.config) if self.definition else None
        self._lock = threading.Lock()
        self._done = 0
        self._total = len(plan.to_run)

    def execute(self, parallel: int) -> None:
        # Chunks that share an interval run together (offline first, then online from the same rows);
        # adjacent intervals of one compute span are recomputed in one pass (see ``_span``).
        # Every chunk of the run is first recorded ``planned``: until it is done again, what an
        # earlier run did there no longer counts, so ``--resume`` after a crash redoes the rest.
        self.bf.ledger.record([self._entry(c.target, c.interval, Status.PLANNED) for c in self.plan.to_run])
        units = self._units(parallel)
        if parallel == 1:
            for unit in units:
                if not self._span(unit):
                    break
            return
        stop = threading.Event()
        with ThreadPoolExecutor(parallel, thread_name_prefix="backfill") as pool:

            def task(unit):
                try:
                    if not stop.is_set() and not self._span(unit, stop):
                        stop.set()
                except BaseException:  # e.g. the ledger unwritable: the other workers stop too
                    stop.set()
                    raise

            futures = [pool.submit(task, unit) for unit in units]
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                f.result()

    def _units(self, parallel: int) -> list[list[Group]]:
        """The plan's intervals to run, grouped by compute span, in order. With ``parallel`` workers
        the longest spans are halved until every worker has one (fewer shared passes, more concurrency)."""
        by_interval: dict[Interval, list[PlannedChunk]] = {}
        for c in self.plan.to_run:
            by_interval.setdefault(c.interval, []).append(c)
        units: list[list[Group]] = []
        last_span = None
        for iv, chunks in sorted(by_interval.items()):
            span = self.plan.span_of(iv) if any(c.target == Target.OFFLINE for c in chunks) else None
            if span is not None and span == last_span:
                units[-1].append((iv, chunks))
            else:
                units.append([(iv, chunks)])
            last_span = span
        while len(units) < parallel:
            longest = max(range(len(units)), key=lambda i: len(units[i]), default=None)
            if longest is None or len(units[longest]) < 2:
                break
            unit = units[longest]
            units[longest : longest + 1] = [unit[: len(unit) // 2], unit[len(unit) // 2 :]]
        return units

    def _span(self, groups: list[Group], stop: threading.Event | None = None) -> bool:
        """Recompute adjacent chunks in one pass of the definition, then validate, commit and record
        each chunk on its own, in order. False stops the run (as for a single chunk); so does
        ``stop`` (another worker's chunk failed), checked before each chunk is committed.

        All chunks of the pass are recorded ``running`` first; a kill leaves the uncommitted ones
        ``running`` (``--resume`` redoes them). If the pass itself fails, its chunks are computed
        again one at a time, so a failure ends exactly as a run with ``--compute-span 1`` would.
        """
        if len(groups) == 1:
            return self._chunk(*groups[0])
        span_iv = Interval(groups[0][0].start, groups[-1][0].end)
        self.bf.ledger.record(
            [self._entry(c.target, iv, Status.RUNNING) for iv, chunks in groups for c in chunks]
        )
        started = time.monotonic()
        self.tick(Target.OFFLINE, span_iv, "compute", chunks=len(groups))
        try:
            with span(
                "fs.backfill.span", view=self.plan.view, start=span_iv.start.isoformat(), chunks=len(groups)
            ):
                computed = offline.compute(self.definition, span_iv, self.view.batch_source.timestamp_field)
        except Exception as e:
            log.warning(
                "recomputing %d chunks of %s in one pass failed (%s); computing them one at a time",
                len(groups),
                self.plan.view,
                failure_message(e),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            parts = [None] * len(groups)
        else:
            parts = offline.split(computed, [iv for iv, _ in groups], self.view.batch_source.timestamp_field)
            del computed  # only the chunks' rows stay in memory
        share = (time.monotonic() - started) / len(groups)
        for i, ((iv, chunks), part) in enumerate(zip(groups, parts, strict=True)):
            if stop is not None and stop.is_set():
                self._abandon(groups[i:], "not committed: the run stopped after another chunk failed")
                return False
            if not self._chunk(iv, chunks, part, share if part is not None else 0.0):
                self._abandon(groups[i + 1 :], f"not committed: chunk {iv} of its compute pass failed")
                return False
        return True

    def _abandon(self, groups: list[Group], message: str) -> None:
        """Record the chunks of a compute pass that will not be committed as failed (resumable)."""
        for iv, chunks in groups:
            for c in chunks:
                self._finish(ChunkResult(c.target, iv, Status.FAILED, message=message))

    # -- one chunk ---------------------------------------------------------------------------------
    def _entry(
        self, target: Target, iv: Interval, status: Status, r: ChunkResult | None = None
    ) -> LedgerEntry:
        r = r or ChunkResult(target, iv, status)
        return LedgerEntry(
            run_id=self.run_id,
            view=self.plan.view,
            target=target,
            kind=self.plan.kind,
            start=iv.start,
            end=iv.end,
            status=status,
            holder=self.holder,
            recorded_at=utcnow(),
            rows_in=r.rows_in,
            rows_written=r.rows_written,
            rows_skipped=r.rows_skipped,
            source_version=r.source_version,
            target_version=r.target_version,
            validation=r.validation,
            message=r.message[:2000],
        )

    def tick(self, target: Target, iv: Interval, stage: str, chunks: int = 1) -> None:
        if self.progress:
            self.progress(ProgressEvent(self.plan.view, target, iv, stage, self._done, self._total, chunks))

    def _finish(self, r: ChunkResult) -> None:
        self.bf.ledger.record([self._entry(r.target, r.interval, r.status, r)])
        emit_metrics(self.plan.kind.value, self.plan.view, r)
        with self._lock:
            self.result.chunks.append(r)
            self._done += 1
        self.tick(r.target, r.interval, r.status.value if r.status != Status.DONE else "done")

    def _chunk(
        self,
        iv: Interval,
        chunks: list[PlannedChunk],
        computed: offline.Computed | None = None,
        compute_seconds: float = 0.0,
    ) -> bool:
        """Run one interval for its targets; False stops the run (a failure, not a rejection).

        ``computed``: the chunk's offline rows from a compute pass over its span (its ``running``
        entries are then already recorded; ``compute_seconds`` is its share of the pass)."""
        targets = [c.target for c in chunks]
        if computed is None:
            self.bf.ledger.record([self._entry(t, iv, Status.RUNNING) for t in targets])
        current = targets[0]
        started = time.monotonic()
        try:
            with span("fs.backfill.chunk", view=self.plan.view, start=iv.start.isoformat()):
                rows, version = None, None
                if Target.OFFLINE in targets:
                    current = Target.OFFLINE
                    r, rows = commit_offline(self, iv, computed)
                    version = r.target_version
                    r.seconds = time.monotonic() - started + compute_seconds
                    self._finish(r)
                    if r.status != Status.DONE:
                        for t in targets[1:]:
                            self._finish(
                                ChunkResult(t, iv, r.status, message="offline chunk " + r.status.value)
                            )
                        return True
                if Target.ONLINE in targets:
                    current = Target.ONLINE
                    started = time.monotonic()
                    r = commit_online(self, iv, rows, version)
                    r.seconds = time.monotonic() - started
                    self._finish(r)
        except Exception as e:
            message = failure_message(e)
            log.error(
                "chunk %s of %s failed: %s",
                iv,
                self.plan.view,
                message,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            for t in targets[targets.index(current) :]:
                self._finish(
                    ChunkResult(t, iv, Status.FAILED, message=message, seconds=time.monotonic() - started)
                )
            return False
        return True
