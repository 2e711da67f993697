"""The two phases of one backfill chunk: compute, check and commit the offline rows
(``commit_offline``), then write the online store (``commit_online``). ``Job`` (job.py) runs them
in order and records the results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.backfill import offline, online
from fs_platform.backfill.model import ChunkResult, Interval, Status, Target
from fs_platform.backfill.validation import run_checks
from fs_platform.field_mapping import source_column
from fs_platform.plugins.delta.schema import arrow_columns, check_view

if TYPE_CHECKING:
    from fs_platform.backfill.job import Job


def _validate(job: Job, target: Target, iv: Interval, data) -> tuple[str | None, str]:
    job.tick(target, iv, "validate")
    verdict = run_checks(job.bf.checks(job.plan.kind), job.plan.view, iv, data)
    return verdict.status, verdict.details


def commit_offline(job: Job, iv: Interval, computed: offline.Computed | None = None):
    """The chunk's offline rows (computed here unless given), checked, validated and committed; with
    the latest row per key for the online phase when the run writes online too (None: read back)."""
    view = job.view
    ts_field = view.batch_source.timestamp_field
    if computed is None:
        job.tick(Target.OFFLINE, iv, "compute")
        computed = offline.compute(job.definition, iv, ts_field)
    data = computed.data
    if data.num_rows:  # the rows must fit the view before anything is committed (offline or online)
        check_view(
            view,
            arrow_columns(data.schema),
            hint=f"fix the batch definition of {view.name!r} (backfills.py) or the view; "
            "nothing was committed",
        )
    r = ChunkResult(
        Target.OFFLINE, iv, Status.DONE, rows_in=data.num_rows, source_version=computed.source_version
    )
    r.validation, r.message = _validate(job, Target.OFFLINE, iv, data)
    if r.validation == "fail":
        r.status = Status.REJECTED
        return r, None
    if not job.allow_shrink:
        held = offline.rows_in_range(job.location, ts_field, iv)
        if data.num_rows < held:
            r.status = Status.REJECTED
            r.message = (
                f"recomputed {data.num_rows} rows where the table holds {held}: replacing would "
                "delete rows (do the definition's inputs cover this range yet?); "
                "rerun with --allow-shrink if the correction removes rows"
            )
            return r, None
    job.tick(Target.OFFLINE, iv, "commit")
    meta = {"fs.backfill.run": job.run_id, "fs.backfill.chunk": str(iv)}
    with job.bf._commit_lock:
        job.lease.check()
        r.target_version = offline.replace_range(
            job.location, data, ts_field, iv, view.name, meta, create=job.plan.create_table
        )
    r.rows_written = data.num_rows
    if Target.ONLINE not in job.plan.targets:
        return r, None
    # The recomputed rows carry source column names: a join key renamed by field_mapping is
    # looked up under its source name.
    keys = [source_column(view.batch_source, c.name) for c in view.entity_columns]
    # None (exact ties): the online phase reads the chunk's latest rows back through Spark.
    latest = offline.latest_per_key(data, keys, ts_field, view.batch_source.created_timestamp_column or None)
    return r, latest


def commit_online(job: Job, iv: Interval, rows, offline_version: int | None):
    """The chunk's online write: tiles rebuilt for aggregation views, else its latest rows (pulled
    when not given), validated and written."""
    store = job.bf.store
    source_version = offline_version  # rows just committed offline: that version is the source
    job.tick(Target.ONLINE, iv, "compute")
    if is_aggregation(job.view):  # tiles rebuilt from the raw events, not rows
        pulled = online.rebuild_tiles(store, job.view, iv)
        r = ChunkResult(
            Target.ONLINE,
            iv,
            Status.DONE,
            rows_in=pulled.data.num_rows,
            source_version=pulled.source_version,
        )
        job.tick(Target.ONLINE, iv, "commit")
        job.lease.check()
        written = online.write_tiles(store, job.view, pulled.data)
        r.rows_written, r.rows_skipped = written.written, written.skipped
        return r
    if rows is None:
        pulled = online.pull_latest(store, job.view, iv)
        rows, source_version = pulled.data, pulled.source_version
    r = ChunkResult(Target.ONLINE, iv, Status.DONE, rows_in=rows.num_rows, source_version=source_version)
    r.validation, r.message = _validate(job, Target.ONLINE, iv, rows)
    if r.validation == "fail":
        r.status = Status.REJECTED
        return r
    job.tick(Target.ONLINE, iv, "commit")
    job.lease.check()
    written = online.write(store, job.view, rows, created_at=job.created_override)
    r.rows_written, r.rows_skipped = written.written, written.skipped
    return r
