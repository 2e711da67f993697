"""What a backfill or materialization run reports: progress events to the caller, job metrics per
finished chunk, and a failed chunk's message (for the ledger, logs and errors) without feature values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fs_platform.backfill.model import ChunkResult, Interval, Status, Target
from fs_platform.errors import FsError
from fs_platform.governance.metrics import JOB_DURATION, JOB_ROWS
from fs_platform.scrub import summary


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


def emit_metrics(kind: str, view: str, r: ChunkResult) -> None:
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
