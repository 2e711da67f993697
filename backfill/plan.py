"""Planning: split a range into chunks, mark what the ledger already has, estimate source rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from backfill.intervals import covered, merge
from backfill.ledger import Ledger
from backfill.model import BackfillPlan, Interval, Kind, PlannedChunk, Status, Target
from fs.errors import ConfigError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def grid_chunks(start: datetime, end: datetime, size: timedelta) -> list[Interval]:
    """``[start, end)`` cut at multiples of ``size`` since the Unix epoch (1d -> UTC midnights).

    Aligning to a fixed UTC grid makes every run of a view cut the same chunks whatever its start,
    so the ledger lines up across runs; only the first and last chunk may be partial. UTC has no
    DST, so a local-time range across a DST change is simply a 23h or 25h range here.
    """
    if size <= timedelta(0):
        raise ConfigError("chunk size must be positive")
    if end <= start:
        raise ConfigError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    out: list[Interval] = []
    cur = start
    while cur < end:
        boundary = _EPOCH + ((cur - _EPOCH) // size + 1) * size
        nxt = min(boundary, end)
        out.append(Interval(cur, nxt))
        cur = nxt
    return out


def build_plan(
    ledger: Ledger,
    view: str,
    kind: Kind,
    targets: tuple[Target, ...],
    start: datetime,
    end: datetime,
    chunk: timedelta,
    *,
    resume: bool,
    estimate: Callable[[Target, Interval], int | None],
    definition: str | None = None,
    lease_holder: str | None = None,
) -> BackfillPlan:
    """Chunks per target; with ``resume`` those the ledger records as done are skipped.

    A backfill counts only earlier backfills as done (its online rows must follow the recomputed
    offline rows); a materialization counts any completed online write of the range.
    """
    intervals = grid_chunks(start, end, chunk)
    counts = {Kind.BACKFILL} if kind == Kind.BACKFILL else set(Kind)
    planned = []
    for target in targets:
        done = merge(
            e.interval for e in ledger.latest(view, target) if e.status == Status.DONE and e.kind in counts
        )
        for iv in intervals:
            is_done = covered(iv, done)
            planned.append(PlannedChunk(target, iv, is_done, not (resume and is_done), estimate(target, iv)))
    return BackfillPlan(
        view=view,
        kind=kind,
        targets=targets,
        start=start,
        end=end,
        chunk=chunk,
        chunks=tuple(planned),
        definition=definition,
        lease_holder=lease_holder,
    )
