"""Planning: split a range into chunks, mark what the ledger already has, estimate source rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from fs_platform.backfill.intervals import covered
from fs_platform.backfill.ledger import Ledger
from fs_platform.backfill.model import BackfillPlan, Interval, Kind, PlannedChunk, Target
from fs_platform.errors import ConfigError
from fs_platform.timeutil import EPOCH


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
        boundary = EPOCH + ((cur - EPOCH) // size + 1) * size
        nxt = min(boundary, end)
        out.append(Interval(cur, nxt))
        cur = nxt
    return out


def compute_spans(
    intervals: Sequence[Interval],
    max_chunks: int,
    max_rows: int | None = None,
    estimate: Callable[[Interval], int | None] | None = None,
) -> list[Interval]:
    """Group chunks into compute spans: runs of adjacent chunks recomputed in one pass.

    Each run of adjacent ``intervals`` (a done chunk in between breaks the run) is cut into as few
    spans of at most ``max_chunks`` chunks as possible, of even length (30 chunks at most 7 each:
    five of 6). A span whose ``estimate`` (input rows, lookback included) exceeds ``max_rows`` is
    halved until it fits or is one chunk. Every span covers whole chunks.
    """
    if max_chunks < 1:
        raise ConfigError("compute span must be at least 1 chunk")
    runs: list[list[Interval]] = []
    for iv in sorted(intervals):
        if runs and runs[-1][-1].end == iv.start:
            runs[-1].append(iv)
        else:
            runs.append([iv])
    out: list[Interval] = []

    def fit(chunks: list[Interval]) -> None:
        if len(chunks) > 1 and max_rows and estimate is not None:
            rows = estimate(Interval(chunks[0].start, chunks[-1].end))
            if rows is not None and rows > max_rows:
                half = len(chunks) // 2
                fit(chunks[:half])
                fit(chunks[half:])
                return
        out.append(Interval(chunks[0].start, chunks[-1].end))

    for run in runs:
        count = -(-len(run) // max_chunks)
        size, extra = divmod(len(run), count)
        at = 0
        for i in range(count):
            n = size + (1 if i < extra else 0)
            fit(run[at : at + n])
            at += n
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
    compute_span: int = 1,
    compute_span_rows: int | None = None,
) -> BackfillPlan:
    """Chunks per target; with ``resume`` those the ledger records as done are skipped.

    A backfill counts only earlier backfills as done (its online rows must follow the recomputed
    offline rows); a materialization counts any completed online write of the range. The offline
    chunks that will run are grouped into compute spans (``compute_spans``; their row estimate is
    ``estimate(Target.OFFLINE, span)``).
    """
    intervals = grid_chunks(start, end, chunk)
    counts = {Kind.BACKFILL} if kind == Kind.BACKFILL else set(Kind)
    planned = []
    recomputed: set[Interval] = set()  # intervals whose offline rows this run rewrites
    for target in sorted(targets, key=lambda t: t != Target.OFFLINE):  # offline first, then online
        done = ledger.done(view, target, counts)
        for iv in intervals:
            is_done = covered(iv, done)
            # Online rows follow the offline rows: a rewritten interval is written online again.
            runs = not (resume and is_done) or iv in recomputed
            if target == Target.OFFLINE and runs:
                recomputed.add(iv)
            planned.append(PlannedChunk(target, iv, is_done, runs, estimate(target, iv)))
    planned.sort(key=lambda c: targets.index(c.target))
    offline = [c.interval for c in planned if c.target == Target.OFFLINE and c.will_run]
    spans = compute_spans(offline, compute_span, compute_span_rows, lambda iv: estimate(Target.OFFLINE, iv))
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
        compute_span=compute_span,
        spans=tuple(spans),
    )
