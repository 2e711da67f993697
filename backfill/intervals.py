"""Half-open ``[start, end)`` interval arithmetic (the ledger's bookkeeping)."""

from __future__ import annotations

from collections.abc import Iterable

from fs_platform.backfill.model import Interval


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union; touching intervals ``[a, b) + [b, c)`` become ``[a, c)``."""
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.start <= out[-1].end:
            if iv.end > out[-1].end:
                out[-1] = Interval(out[-1].start, iv.end)
        else:
            out.append(iv)
    return out


def covered(interval: Interval, merged: list[Interval]) -> bool:
    """Whether ``interval`` lies entirely inside one interval of the merged union."""
    return any(m.start <= interval.start and interval.end <= m.end for m in merged)


def subtract(interval: Interval, merged: list[Interval]) -> list[Interval]:
    """The parts of ``interval`` not in the merged union."""
    out, cur = [], interval.start
    for m in merged:
        if m.end <= cur or m.start >= interval.end:
            continue
        if m.start > cur:
            out.append(Interval(cur, m.start))
        cur = max(cur, m.end)
    if cur < interval.end:
        out.append(Interval(cur, interval.end))
    return out


def remove(merged: list[Interval], interval: Interval) -> list[Interval]:
    """The merged union without ``interval`` (still sorted and non-overlapping)."""
    out = []
    for m in merged:
        out += subtract(m, [interval])
    return out
