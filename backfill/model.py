"""Typed results of planning and running backfills and materializations.

Intervals are half-open ``[start, end)`` in UTC everywhere: a row with event time ``t`` belongs to
the chunk with ``start <= t < end``, so consecutive chunks never share a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class Target(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Kind(StrEnum):
    """Which operation wrote a ledger entry."""

    MATERIALIZE = "materialize"
    INCREMENTAL = "incremental"
    BACKFILL = "backfill"


class Status(StrEnum):
    PLANNED = "planned"  # a run will (re)do it: not done until a later entry says so
    RUNNING = "running"  # started; a later entry says how it ended (none if the process died)
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"  # a strict validator refused the chunk; nothing was committed


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError(f"empty interval [{self.start.isoformat()}, {self.end.isoformat()})")

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True)
class LedgerEntry:
    """One state change of one chunk of one view and target (the ledger is append-only)."""

    run_id: str
    view: str
    target: Target
    kind: Kind
    start: datetime
    end: datetime
    status: Status
    holder: str
    recorded_at: datetime
    rows_in: int = 0
    """Rows the chunk read (materialize) or recomputed (backfill)."""
    rows_written: int = 0
    rows_skipped: int = 0
    """Online rows not written because the store held a newer value (stream) or they were past the ttl."""
    source_version: int | None = None
    """Delta version of the table the chunk read (the view's source, or the definition's first input)."""
    target_version: int | None = None
    """Delta version of the view's table after an offline chunk was committed."""
    validation: str | None = None  # pass | warn | fail
    message: str = ""

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)


@dataclass(frozen=True)
class PlannedChunk:
    target: Target
    interval: Interval
    done: bool
    """The ledger already records this chunk (or a range covering it) as done."""
    will_run: bool
    estimated_rows: int | None = None
    """Source rows in the chunk from Delta file statistics (``None`` when no statistics)."""


@dataclass(frozen=True)
class BackfillPlan:
    view: str
    kind: Kind
    targets: tuple[Target, ...]
    start: datetime
    end: datetime
    chunk: timedelta
    chunks: tuple[PlannedChunk, ...]
    definition: str | None = None
    """How offline rows are recomputed (``sql`` / ``python:<function>``); ``None`` for online-only runs."""
    lease_holder: str | None = None
    """Who holds the view's lease right now (a run would be refused), if anyone."""
    compute_span: int = 1
    """At most this many adjacent offline chunks are recomputed in one pass of the definition."""
    spans: tuple[Interval, ...] = ()
    """The offline compute passes, in order: each covers one or more adjacent chunks to run. Each
    chunk of a span is still validated, committed and recorded on its own, in order."""
    create_table: bool = False
    """The view's Delta table does not exist and the run creates it from the recomputed rows
    (``create=True``, ``--create``); without it a missing table is refused."""

    def span_of(self, interval: Interval) -> int | None:
        """Index in ``spans`` of the compute pass that covers ``interval`` (``None``: not recomputed)."""
        for i, span in enumerate(self.spans):
            if span.start <= interval.start and interval.end <= span.end:
                return i
        return None

    @property
    def to_run(self) -> tuple[PlannedChunk, ...]:
        return tuple(c for c in self.chunks if c.will_run)

    @property
    def estimated_rows(self) -> int | None:
        known = [c.estimated_rows for c in self.to_run if c.target == self.targets[0]]
        return sum(c for c in known if c is not None) if known and None not in known else None


@dataclass
class ChunkResult:
    target: Target
    interval: Interval
    status: Status
    rows_in: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    source_version: int | None = None
    target_version: int | None = None
    validation: str | None = None
    message: str = ""
    seconds: float = 0.0


@dataclass
class BackfillResult:
    plan: BackfillPlan
    run_id: str
    chunks: list[ChunkResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.status == Status.DONE for c in self.chunks) and len(self.chunks) == len(self.plan.to_run)

    def count(self, status: Status, target: Target | None = None) -> int:
        return sum(1 for c in self.chunks if c.status == status and (target is None or c.target == target))

    def rows_written(self, target: Target) -> int:
        return sum(c.rows_written for c in self.chunks if c.target == target)


@dataclass(frozen=True)
class ViewStatus:
    """What the ledger knows about one view and target (``fs backfill status``)."""

    view: str
    target: Target
    done: tuple[Interval, ...]
    """Merged ranges recorded as done."""
    pending: tuple[LedgerEntry, ...]
    """Chunks whose latest entry is not done (failed, rejected, or running/interrupted), oldest first."""
    watermark: datetime | None
    """Where ``materialize-incremental`` starts next (online target only)."""
    last: LedgerEntry | None
    lease_holder: str | None = None
