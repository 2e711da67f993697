"""The actions that reload a view's data (``rematerialize``, ``resume_backfill``; the table in
``fs_platform.doctor.actions``): each snapshots what it overwrites, and its rollback restores that and
marks the range not done in the ledger, so the watermark and ``--resume`` redo it."""

from __future__ import annotations

from datetime import timedelta

from fs_platform.doctor.kind import Kind, OpsContext
from fs_platform.doctor.snapshots import restore_keys, snapshot_keys, view_patterns
from fs_platform.timeutil import parse_time, utcnow


def _mark_not_done(ctx: OpsContext, view: str, targets, kind, start, end, action_id: str) -> None:
    """Ledger entries that take ``[start, end)`` out of the done coverage (watermark and --resume redo it)."""
    from fs_platform.backfill.model import LedgerEntry, Status
    from fs_platform.backfill.runner import Backfiller

    bf = Backfiller(ctx.platform)
    bf.ledger.record(
        LedgerEntry(
            f"ops-{action_id}",
            view,
            t,
            kind,
            start,
            end,
            Status.PLANNED,
            "fs ops rollback",
            utcnow(),
            message=f"rolled back by fs ops rollback {action_id}",
        )
        for t in targets
    )


class Rematerialize(Kind):
    kind = "rematerialize"
    rollback = (
        "restore the view's online keys from the snapshot taken before; the range is marked not done in "
        "the ledger"
    )

    def execute(self, ctx, action):
        p = action.params
        state = ctx.online()
        n = snapshot_keys(ctx, action.id, view_patterns(state.layout, p["view"]))
        result = ctx.platform.materialize(
            p["start"], p["end"], views=[p["view"]], chunk=timedelta(seconds=p.get("chunk_seconds", 86400))
        )
        return {
            "keys_snapshotted": n,
            "chunks": result.chunks_done,
            "rows_written": result.rows_written,
            "rows_skipped": result.rows_skipped,
        }

    def undo(self, ctx, action, changed):
        from fs_platform.backfill.model import Kind as LedgerKind
        from fs_platform.backfill.model import Target

        p = action.params
        out = restore_keys(ctx, action.id, view_patterns(ctx.online().layout, p["view"]))
        _mark_not_done(
            ctx,
            p["view"],
            [Target.ONLINE],
            LedgerKind.MATERIALIZE,
            parse_time(p["start"]),
            parse_time(p["end"]),
            action.id,
        )
        return out


class ResumeBackfill(Kind):
    kind = "resume_backfill"
    rollback = (
        "restore the view's Delta table to the version before the run and its online keys from the "
        "snapshot; the range is marked not done in the ledger"
    )

    def execute(self, ctx, action):
        from fs_platform.backfill.model import Status, Target
        from fs_platform.backfill.runner import Backfiller
        from fs_platform.plugins.delta.tables import current_version

        p = action.params
        bf = Backfiller(ctx.platform)
        plan = bf.plan(
            p["view"],
            p["start"],
            p["end"],
            to=p.get("to", "both"),
            chunk=timedelta(seconds=p.get("chunk_seconds", 86400)),
            resume=True,
        )
        if not plan.to_run:
            return {"skipped": True, "reason": "every chunk of the range is done in the ledger"}
        fv = ctx.platform.feature_view(p["view"])
        changed: dict = {}
        if Target.OFFLINE in plan.targets:
            changed["delta_version_before"] = current_version(fv.batch_source, ctx.store.config)
        if Target.ONLINE in plan.targets:
            changed["keys_snapshotted"] = snapshot_keys(
                ctx, action.id, view_patterns(ctx.online().layout, p["view"])
            )
        result = bf.run(plan)
        if Target.OFFLINE in plan.targets:
            changed["delta_version_after"] = current_version(fv.batch_source, ctx.store.config)
        changed.update(
            run_id=result.run_id,
            ok=result.ok,
            chunks_done=result.count(Status.DONE),
            chunks_not_done=len(result.chunks) - result.count(Status.DONE),
            rows_written_offline=result.rows_written(Target.OFFLINE),
            rows_written_online=result.rows_written(Target.ONLINE),
        )
        return changed

    def undo(self, ctx, action, changed):
        from deltalake import DeltaTable

        from fs_platform.backfill.model import Kind as LedgerKind
        from fs_platform.backfill.model import Target
        from fs_platform.plugins.delta.tables import resolve_location

        p = action.params
        out: dict = {}
        targets = []
        before, after = changed.get("delta_version_before"), changed.get("delta_version_after")
        if before is not None:
            targets.append(Target.OFFLINE)
            if after is not None and after != before:
                table = DeltaTable(resolve_location(ctx.platform.feature_view(p["view"]), ctx.store.config))
                table.restore(before)
                out["delta_restored_to"] = before
                out["delta_version_after"] = table.version()
        if "keys_snapshotted" in changed:
            targets.append(Target.ONLINE)
            out.update(restore_keys(ctx, action.id, view_patterns(ctx.online().layout, p["view"])))
        _mark_not_done(
            ctx,
            p["view"],
            targets,
            LedgerKind.BACKFILL,
            parse_time(p["start"]),
            parse_time(p["end"]),
            action.id,
        )
        return out
