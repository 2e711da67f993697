"""``Backfiller``: plans and runs chunked, resumable, leased backfills and materializations.

    from fs_platform import Platform
    from fs_platform.backfill import Backfiller
    bf = Backfiller(Platform("feature_repo"))
    plan = bf.plan("merchant_risk_daily", "2026-11-01", "2026-11-08", to="both")
    result = bf.run(plan, parallel=2)

Per chunk: ledger ``running`` -> compute (recompute offline, or pull the latest rows) -> checks ->
commit (Delta range replace, then event-time-ordered online write) -> ledger ``done``. An
aggregation view has no offline rows (``--to offline|both`` is refused); its online chunks rebuild
its tiles from the raw events (``online.rebuild_tiles``). Adjacent
offline chunks of one compute span (``plan.spans``) are recomputed in one pass of the definition,
then checked, committed and recorded one chunk at a time, in order. A crash leaves ``running`` as
the last entry of each uncommitted chunk; ``--resume`` (and the incremental watermark) starts again
from it. Library code: returns typed results and never prints.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.backfill import offline, online
from fs_platform.backfill.definitions import BatchDefinition, load_repo
from fs_platform.backfill.lease import Lease, LeaseStore, describe_self
from fs_platform.backfill.ledger import Ledger
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
    ViewStatus,
)
from fs_platform.backfill.plan import build_plan
from fs_platform.backfill.scope import StoreScopes
from fs_platform.backfill.settings import load_settings
from fs_platform.backfill.validation import ChunkCheck, expectation_checks, run_checks
from fs_platform.errors import BackfillError, FsError, InvalidArgument, RepoError, SourceNotFoundError
from fs_platform.field_mapping import source_column
from fs_platform.governance.metrics import JOB_DURATION, JOB_ROWS
from fs_platform.observability import span
from fs_platform.plugins.delta.schema import arrow_columns, check_view
from fs_platform.plugins.delta.tables import resolve_location
from fs_platform.scrub import summary
from fs_platform.timeutil import parse_range, parse_time, utcnow
from fs_platform.views import feature_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    view: str
    target: Target
    interval: Interval
    stage: str  # compute | validate | commit | done | failed | rejected
    chunks_done: int
    chunks_total: int
    chunks: int = 1
    """Chunks the event covers: a ``compute`` of several adjacent chunks in one pass covers them all
    (``interval`` is then the whole span)."""


Progress = Callable[[ProgressEvent], None]
Group = tuple[Interval, list[PlannedChunk]]  # one interval's planned chunks (one per target)

TARGETS = {"online": (Target.ONLINE,), "offline": (Target.OFFLINE,), "both": (Target.OFFLINE, Target.ONLINE)}


class Backfiller:
    """Backfills and ledger-tracked materializations for one ``Platform`` (repo + environment)."""

    def __init__(self, platform, checks: Sequence[ChunkCheck] = ()):
        self.platform = platform
        self.settings = load_settings(platform.config)
        self.ledger = Ledger(self.settings.ledger_location(platform.repo_path), StoreScopes(self))
        self._checks = tuple(checks)
        self._commit_lock = threading.Lock()  # Delta commits of one table are serialised
        self._gx_checks: dict[str, tuple[ChunkCheck, ...]] = {}

    @property
    def store(self):
        return self.platform.store

    @cached_property
    def leases(self) -> LeaseStore:
        client, namespace, endpoint = online.lease_client(self.store)
        return LeaseStore(client, namespace, self.settings.lease_ttl_seconds, endpoint)

    @cached_property
    def _repo(self):
        return load_repo(self.platform.repo_path)

    def checks(self, kind: Kind) -> tuple[ChunkCheck, ...]:
        """The chunk checks of a run of ``kind`` (the GX gate records the run kind as its origin)."""
        origin = "backfill" if kind == Kind.BACKFILL else "materialize"
        if origin not in self._gx_checks:
            self._gx_checks[origin] = expectation_checks(self.store, origin)
        return self._checks + self._repo.checks + self._gx_checks[origin]

    def definition(self, view: str) -> BatchDefinition:
        found = self._repo.definitions.get(view)
        if found is None:
            raise RepoError(
                f"feature view {view!r} has no batch definition, so it cannot be recomputed offline",
                hint="add one to backfills.py in the feature repo (see docs/backfill.md), or use --to online",
            )
        return found

    # -- planning --------------------------------------------------------------------------------
    def plan(
        self,
        view: str,
        start: str | datetime,
        end: str | datetime,
        *,
        to: str = "both",
        chunk: timedelta | None = None,
        resume: bool = False,
        kind: Kind = Kind.BACKFILL,
        compute_span: int | None = None,
        create: bool = False,
    ) -> BackfillPlan:
        """What a run would do: chunks per target, which are done, estimated source rows, and the
        compute passes (``compute_span``: at most this many adjacent offline chunks recomputed in one
        pass of the definition; default ``backfill.compute_span``).

        The view is checked against its Delta table first (the check of ``fs apply`` and retrieval):
        ``SchemaMismatchError`` listing every problem, before anything runs. An offline run whose
        table does not exist is refused (``SourceNotFoundError``) unless ``create``: the run then
        creates it from the recomputed rows (``plan.create_table``; a warning is logged)."""
        if to not in TARGETS:
            raise InvalidArgument(f"to: must be online, offline or both, not {to!r}")
        targets = TARGETS[to]
        fv = feature_view(self.store, view)
        if is_aggregation(fv) and Target.OFFLINE in targets:
            raise BackfillError(
                f"{view!r} is an aggregation view: its offline values are computed from the raw events at "
                "retrieval, so there are no rows to recompute offline",
                hint=f"rebuild its online tiles with `fs backfill {view} --to online ...` or `fs materialize`",
            )
        definition = self.definition(view) if Target.OFFLINE in targets else None
        start_dt, end_dt = parse_range(start, end)
        if chunk is not None and chunk <= timedelta(0):
            raise InvalidArgument(f"chunk: not a positive duration: {chunk} (use e.g. 6h, 1d, 7d)")
        create_table = self._check_table(fv, targets, create)
        holder = self.leases.holder(view)

        stats: dict[Target, offline.RowStats | None] = {}

        def estimate(target: Target, iv: Interval) -> int | None:
            if target not in stats:  # file statistics read once per plan
                stats[target] = self._row_stats(fv, definition if target == Target.OFFLINE else None)
            if stats[target] is None:
                return None
            if target == Target.OFFLINE and definition is not None:
                iv = Interval(iv.start - definition.lookback, iv.end)
            return stats[target].estimate(iv)

        plan = build_plan(
            self.ledger, view, kind, targets, start_dt, end_dt,
            self.settings.chunk_size if chunk is None else chunk,
            resume=resume, estimate=estimate, definition=definition.describe if definition else None,
            lease_holder=holder.holder if holder else None,
            compute_span=compute_span or self.settings.compute_span,
            compute_span_rows=self.settings.compute_span_rows or None,
        )  # fmt: skip
        return replace(plan, create_table=True) if create_table else plan

    def _check_table(self, fv, targets: tuple[Target, ...], create: bool) -> bool:
        """Refuse a view its Delta table cannot serve, or (offline) a missing table unless ``create``;
        True when the run will create the table."""
        from fs_platform.plugins.delta.schema import check_view, table_columns
        from fs_platform.plugins.delta.source import DeltaSource
        from fs_platform.plugins.delta.tables import table_exists

        if not isinstance(fv.batch_source, DeltaSource):
            return False
        config = self.store.config
        if Target.OFFLINE in targets and not table_exists(fv.batch_source, config):
            location = resolve_location(fv, config)
            if not create:
                raise SourceNotFoundError(
                    f"the Delta table of {fv.name!r} does not exist at {location} (deleted?); "
                    "a backfill does not recreate it unasked",
                    hint="restore it, or rerun with --create to create it from the recomputed rows",
                )
            log.warning("the Delta table of %s does not exist at %s: this run creates it (--create)", fv.name, location)
            return True
        check_view(fv, table_columns(fv, config), hint="fix the view or its Delta table; nothing was written")
        return False

    def _row_stats(self, fv, definition: BatchDefinition | None) -> offline.RowStats | None:
        """Statistics of what a chunk reads: the definition's first input, else the view's source."""
        if definition is not None:
            name = next(iter(definition.inputs))
            return offline.RowStats(definition.location(name), definition.input_timestamp)
        from fs_platform.plugins.delta.source import DeltaSource

        if not isinstance(fv.batch_source, DeltaSource) or not fv.batch_source.path:
            return None  # a catalog table, or not Delta (`feast materialize` of a file source): no statistics
        return offline.RowStats(resolve_location(fv, self.store.config), fv.batch_source.timestamp_field)

    # -- running ---------------------------------------------------------------------------------
    def run(
        self, plan: BackfillPlan, *, parallel: int = 1, progress: Progress | None = None, allow_shrink: bool = False
    ) -> BackfillResult:
        """Run the plan's chunks under the view's lease; returns per-chunk results (never raises for
        a failed chunk: the failure is recorded and the result says so).

        An offline chunk whose recompute has fewer rows than the range holds now is rejected unless
        ``allow_shrink``: replacing it would delete rows, typically because the definition's inputs do
        not cover the range yet (raw data behind what the stream already wrote)."""
        run_id = uuid.uuid4().hex[:12]
        holder = describe_self(run_id)
        run_started = utcnow()
        result = BackfillResult(plan, run_id)
        started = time.monotonic()
        with (
            span("fs.backfill", view=plan.view, kind=plan.kind.value),
            self.leases.acquire(plan.view, holder) as lease,
        ):
            job = _Job(self, plan, run_id, holder, lease, result, progress, run_started, allow_shrink)
            job.execute(max(1, parallel))
        result.seconds = time.monotonic() - started
        self.ledger.compact()
        log.info(
            "%s %s: %d chunk(s) in %.1fs", plan.kind.value, plan.view, len(result.chunks), result.seconds
        )
        return result

    def materialize(
        self,
        views: Sequence[str],
        start: datetime,
        end: datetime,
        *,
        chunk: timedelta | None = None,
        resume: bool = False,
        progress: Progress | None = None,
    ) -> list[BackfillResult]:
        """Offline -> online for ``[start, end)`` per view, chunked and recorded; raises on failure."""
        return [
            self._materialize_view(name, start, end, Kind.MATERIALIZE, chunk, resume, progress)
            for name in views
        ]

    def materialize_incremental(
        self,
        views: Sequence[str],
        end: datetime,
        *,
        chunk: timedelta | None = None,
        progress: Progress | None = None,
    ) -> list[BackfillResult]:
        """Each view from its watermark (the end of its last completed chunk) up to ``end``."""
        results = []
        for name in views:
            view = feature_view(self.store, name)
            start = self.watermark(view) or end - (view.ttl or timedelta(weeks=52))
            if start >= end:
                log.info("%s is up to date (watermark %s)", name, start.isoformat())
                continue
            results.append(self._materialize_view(name, start, end, Kind.INCREMENTAL, chunk, False, progress))
        return results

    def _materialize_view(self, name, start, end, kind, chunk, resume, progress) -> BackfillResult:
        plan = self.plan(name, start, end, to="online", chunk=chunk, resume=resume, kind=kind)
        result = self.run(plan, progress=progress)
        if not result.ok:
            bad = next(c for c in result.chunks if c.status != Status.DONE)
            raise BackfillError(
                f"materialization of {name!r} stopped: chunk {bad.interval} {bad.status.value}: {bad.message}",
                hint="fix the cause, then rerun `fs materialize-incremental` (or `fs materialize ... --resume`)",
            )
        if result.chunks:
            # Keep Feast's own record in step, but only after the work succeeded.
            self.store.registry.apply_materialization(
                feature_view(self.store, name), self.store.project, plan.start, plan.end
            )
        return result

    def status(self, view: str | None = None) -> list[ViewStatus]:
        """Ledger state per view and target (all views with ledger entries when ``view`` is None).
        A named view must be registered or have ledger entries (``ViewNotFoundError`` otherwise)."""
        if view and view not in self.ledger.views():
            feature_view(self.store, view)  # a typo is an error, not an empty status
        views = [view] if view else self.ledger.views()
        out = []
        for name in views:
            holder = self.leases.holder(name)
            for target in Target:
                st = self.ledger.status(name, target)
                if st.last is None and view is None:
                    continue
                out.append(_with_holder(st, holder.holder if holder else None))
        return out

    def watermark(self, view) -> datetime | None:
        """Where the next incremental run of ``view`` starts (ledger first, then Feast's registry)."""
        mark = self.ledger.status(view.name, Target.ONLINE).watermark
        if mark is not None:
            return mark
        return parse_time(view.most_recent_end_time) if view.most_recent_end_time else None


def _emit_metrics(kind: str, view: str, r: ChunkResult) -> None:
    """``fs_job_duration_seconds`` and ``fs_job_rows_total`` for one finished chunk."""
    JOB_DURATION.labels(kind, view).observe(r.seconds)
    if r.status == Status.REJECTED:
        JOB_ROWS.labels(kind, view, "rejected").inc(r.rows_in)
        return
    if r.rows_written:
        JOB_ROWS.labels(kind, view, "written").inc(r.rows_written)
    if r.rows_skipped:
        JOB_ROWS.labels(kind, view, "skipped_stale").inc(r.rows_skipped)


def failure_message(e: BaseException) -> str:
    """What the ledger, logs and errors say about a failed chunk, without feature values.

    Platform errors (``FsError``) are written to name places, not values, and are kept; any other
    exception is summarised by the platform's one scrubbing rule (``fs_platform.scrub.summary``: its type and
    a scrubbed first line). The full exception is only in DEBUG tracebacks.
    """
    if isinstance(e, FsError):
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return summary(e)


def _with_holder(st: ViewStatus, holder: str | None) -> ViewStatus:
    return ViewStatus(st.view, st.target, st.done, st.pending, st.watermark, st.last, holder)


class _Job:
    """One run: executes chunks (optionally in parallel) and records each state change."""

    def __init__(self, bf: Backfiller, plan: BackfillPlan, run_id: str, holder: str, lease: Lease,
                 result: BackfillResult, progress: Progress | None, started_at: datetime,
                 allow_shrink: bool = False):  # fmt: skip
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
        self._tick(Target.OFFLINE, span_iv, "compute", chunks=len(groups))
        try:
            with span(
                "fs.backfill.span", view=self.plan.view, start=span_iv.start.isoformat(), chunks=len(groups)
            ):
                computed = offline.compute(self.definition, span_iv, self.view.batch_source.timestamp_field)
        except Exception as e:
            log.warning(
                "recomputing %d chunks of %s in one pass failed (%s); computing them one at a time",
                len(groups), self.plan.view, failure_message(e), exc_info=log.isEnabledFor(logging.DEBUG),
            )  # fmt: skip
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
            run_id=self.run_id, view=self.plan.view, target=target, kind=self.plan.kind, start=iv.start,
            end=iv.end, status=status, holder=self.holder, recorded_at=utcnow(), rows_in=r.rows_in,
            rows_written=r.rows_written, rows_skipped=r.rows_skipped, source_version=r.source_version,
            target_version=r.target_version, validation=r.validation, message=r.message[:2000],
        )  # fmt: skip

    def _tick(self, target: Target, iv: Interval, stage: str, chunks: int = 1) -> None:
        if self.progress:
            self.progress(ProgressEvent(self.plan.view, target, iv, stage, self._done, self._total, chunks))

    def _finish(self, r: ChunkResult) -> None:
        self.bf.ledger.record([self._entry(r.target, r.interval, r.status, r)])
        _emit_metrics(self.plan.kind.value, self.plan.view, r)
        with self._lock:
            self.result.chunks.append(r)
            self._done += 1
        self._tick(r.target, r.interval, r.status.value if r.status != Status.DONE else "done")

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
                    r, rows = self._offline(iv, computed)
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
                    r = self._online(iv, rows, version)
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

    def _validate(self, target: Target, iv: Interval, data) -> tuple[str | None, str]:
        self._tick(target, iv, "validate")
        verdict = run_checks(self.bf.checks(self.plan.kind), self.plan.view, iv, data)
        return verdict.status, verdict.details

    def _offline(self, iv: Interval, computed: offline.Computed | None = None):
        view = self.view
        ts_field = view.batch_source.timestamp_field
        if computed is None:
            self._tick(Target.OFFLINE, iv, "compute")
            computed = offline.compute(self.definition, iv, ts_field)
        data = computed.data
        if data.num_rows:  # the rows must fit the view before anything is committed (offline or online)
            check_view(view, arrow_columns(data.schema),
                       hint=f"fix the batch definition of {view.name!r} (backfills.py) or the view; nothing was committed")  # fmt: skip
        r = ChunkResult(
            Target.OFFLINE, iv, Status.DONE, rows_in=data.num_rows, source_version=computed.source_version
        )
        r.validation, r.message = self._validate(Target.OFFLINE, iv, data)
        if r.validation == "fail":
            r.status = Status.REJECTED
            return r, None
        if not self.allow_shrink:
            held = offline.rows_in_range(self.location, ts_field, iv)
            if data.num_rows < held:
                r.status = Status.REJECTED
                r.message = (f"recomputed {data.num_rows} rows where the table holds {held}: replacing would "
                             "delete rows (do the definition's inputs cover this range yet?); "
                             "rerun with --allow-shrink if the correction removes rows")
                return r, None
        self._tick(Target.OFFLINE, iv, "commit")
        meta = {"fs.backfill.run": self.run_id, "fs.backfill.chunk": str(iv)}
        with self.bf._commit_lock:
            self.lease.check()
            r.target_version = offline.replace_range(
                self.location, data, ts_field, iv, view.name, meta, create=self.plan.create_table
            )
        r.rows_written = data.num_rows
        if Target.ONLINE not in self.plan.targets:
            return r, None
        # The recomputed rows carry source column names: a join key renamed by field_mapping is
        # looked up under its source name.
        keys = [source_column(view.batch_source, c.name) for c in view.entity_columns]
        # None (exact ties): the online phase reads the chunk's latest rows back through Spark.
        latest = offline.latest_per_key(
            data, keys, ts_field, view.batch_source.created_timestamp_column or None
        )
        return r, latest

    def _online(self, iv: Interval, rows, offline_version: int | None):
        store = self.bf.store
        source_version = offline_version  # rows just committed offline: that version is the source
        self._tick(Target.ONLINE, iv, "compute")
        if is_aggregation(self.view):  # tiles rebuilt from the raw events, not rows
            pulled = online.rebuild_tiles(store, self.view, iv)
            r = ChunkResult(Target.ONLINE, iv, Status.DONE, rows_in=pulled.data.num_rows,
                            source_version=pulled.source_version)
            self._tick(Target.ONLINE, iv, "commit")
            self.lease.check()
            written = online.write_tiles(store, self.view, pulled.data)
            r.rows_written, r.rows_skipped = written.written, written.skipped
            return r
        if rows is None:
            pulled = online.pull_latest(store, self.view, iv)
            rows, source_version = pulled.data, pulled.source_version
        r = ChunkResult(Target.ONLINE, iv, Status.DONE, rows_in=rows.num_rows, source_version=source_version)
        r.validation, r.message = self._validate(Target.ONLINE, iv, rows)
        if r.validation == "fail":
            r.status = Status.REJECTED
            return r
        self._tick(Target.ONLINE, iv, "commit")
        self.lease.check()
        written = online.write(store, self.view, rows, created_at=self.created_override)
        r.rows_written, r.rows_skipped = written.written, written.skipped
        return r
