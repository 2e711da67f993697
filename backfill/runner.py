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
from it. This module plans, leases and reports; ``job.py`` executes a run's chunks.
Library code: returns typed results and never prints.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cached_property

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.backfill import offline, online
from fs_platform.backfill.definitions import BatchDefinition, load_repo
from fs_platform.backfill.job import Job
from fs_platform.backfill.lease import LeaseStore, describe_self
from fs_platform.backfill.ledger import Ledger
from fs_platform.backfill.model import (
    BackfillPlan,
    BackfillResult,
    Interval,
    Kind,
    Status,
    Target,
    ViewStatus,
)
from fs_platform.backfill.plan import build_plan
from fs_platform.backfill.reporting import Progress
from fs_platform.backfill.scope import StoreScopes
from fs_platform.backfill.settings import load_settings
from fs_platform.backfill.validation import ChunkCheck, expectation_checks
from fs_platform.errors import BackfillError, InvalidArgument, RepoError, SourceNotFoundError
from fs_platform.observability import span
from fs_platform.plugins.delta.schema import check_view
from fs_platform.plugins.delta.tables import resolve_location
from fs_platform.timeutil import parse_range, parse_time, utcnow
from fs_platform.views import feature_view

log = logging.getLogger(__name__)

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
                hint=f"rebuild its online tiles with `fs backfill {view} --to online ...` "
                "or `fs materialize`",
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
            self.ledger,
            view,
            kind,
            targets,
            start_dt,
            end_dt,
            self.settings.chunk_size if chunk is None else chunk,
            resume=resume,
            estimate=estimate,
            definition=definition.describe if definition else None,
            lease_holder=holder.holder if holder else None,
            compute_span=compute_span or self.settings.compute_span,
            compute_span_rows=self.settings.compute_span_rows or None,
        )
        return replace(plan, create_table=True) if create_table else plan

    def _check_table(self, fv, targets: tuple[Target, ...], create: bool) -> bool:
        """Refuse a view its Delta table cannot serve, or (offline) a missing table unless ``create``;
        True when the run will create the table."""
        from fs_platform.plugins.delta.schema import table_columns
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
            log.warning(
                "the Delta table of %s does not exist at %s: this run creates it (--create)",
                fv.name,
                location,
            )
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
        self,
        plan: BackfillPlan,
        *,
        parallel: int = 1,
        progress: Progress | None = None,
        allow_shrink: bool = False,
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
            job = Job(self, plan, run_id, holder, lease, result, progress, run_started, allow_shrink)
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
                f"materialization of {name!r} stopped: chunk {bad.interval} {bad.status.value}: "
                f"{bad.message}",
                hint="fix the cause, then rerun `fs materialize-incremental` "
                "(or `fs materialize ... --resume`)",
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


def _with_holder(st: ViewStatus, holder: str | None) -> ViewStatus:
    return ViewStatus(st.view, st.target, st.done, st.pending, st.watermark, st.last, holder)
