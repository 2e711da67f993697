"""``Platform.materialize``'s result and progress: the backfill runner's chunk runs summed per call,
its per-chunk events as ``(label, done, total)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

Progress = Callable[[str, int, int], None]  # (label, done, total)


@dataclass
class MaterializeResult:
    start: datetime
    end: datetime
    views: list[str]
    chunks_done: int = 0
    chunk_results: list[dict] = field(default_factory=list)
    """Per chunk: view, start, end, status, rows_in, rows_written, rows_skipped (newer value online)."""
    chunks_skipped: int = 0
    """Chunks not rerun because the ledger records them as done (``resume=True``)."""
    rows_written: int = 0
    rows_skipped: int = 0


def chunk_progress(progress: Progress | None):
    """Adapt the ``(label, done, total)`` callback to the backfill runner's per-chunk events."""
    if progress is None:
        return None

    def on_event(ev) -> None:
        progress(f"{ev.view} {ev.interval.start:%Y-%m-%d %H:%M} {ev.stage}", ev.chunks_done, ev.chunks_total)

    return on_event


def materialize_result(start: datetime, end: datetime, names: list[str], runs) -> MaterializeResult:
    result = MaterializeResult(start, end, names)
    for run in runs:
        result.chunks_skipped += len(run.plan.chunks) - len(run.plan.to_run)
        for c in run.chunks:
            result.chunks_done += 1
            result.rows_written += c.rows_written
            result.rows_skipped += c.rows_skipped
            result.chunk_results.append(
                {
                    "view": run.plan.view,
                    "start": c.interval.start.isoformat(),
                    "end": c.interval.end.isoformat(),
                    "status": c.status.value,
                    "rows_in": c.rows_in,
                    "rows_written": c.rows_written,
                    "rows_skipped": c.rows_skipped,
                }
            )
    return result
