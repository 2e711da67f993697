"""Typed, idempotent actions ``fs ops apply`` runs, each through the library code the manual command
uses, each declaring (and implementing) its rollback.

==================  ============  ===============================================  ==================================
kind                class         runs                                              rollback
==================  ============  ===============================================  ==================================
rematerialize       reversible    ``Platform.materialize`` (``fs materialize``)     restore the view's online keys from
                                                                                    the snapshot taken before; mark the
                                                                                    range not done in the ledger
resume_backfill     reversible    ``Backfiller.plan(..., resume=True)`` + ``run``   restore the Delta table's previous
                                  (``fs backfill VIEW --resume``)                   version and the online snapshot;
                                                                                    mark the range not done
release_lease       reversible    compare-and-delete of the dead holder's lease     put the same lease value back (if
                                  (only if it is still that exact value)            the view is not leased meanwhile)
delete_view_keys    reversible    the online store's own deletion of a deleted      RESTORE every key (and its expiry)
                                  view's keys (SCAN + UNLINK, as ``fs apply``)      from the snapshot taken before
restore_delta       reversible    ``DeltaTable.restore(version)`` to the last       restore the version it replaced
                                  version whose schema fits the view
rerun_validation    read_only     ``validate_offline`` (``fs validate VIEW``)       none needed
teardown            irreversible  never run by fs ops (policy rule ``irreversible``)  -
==================  ============  ===============================================  ==================================

Snapshots (``<ops_path>/snapshots/<action id>.*``) hold what a rollback restores: Redis ``DUMP``
payloads with their absolute expiry, a lease value. They are data (as sensitive as the online store
itself) and are never copied into the audit log, which records only counts and versions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from datetime import timedelta

from fs_platform.doctor.kind import Kind, OpsContext
from fs_platform.doctor.maintenance import MAINTENANCE_KINDS
from fs_platform.doctor.model import Action, ActionClass
from fs_platform.doctor.snapshots import restore_keys, snapshot_keys, view_patterns
from fs_platform.errors import OpsError, OpsRefused
from fs_platform.timeutil import parse_time, utcnow

log = logging.getLogger(__name__)


def new_action(kind: str, params: dict, reason: str) -> Action:
    k = KINDS[kind]
    return Action(
        f"{kind.split('_')[0][:6]}-{uuid.uuid4().hex[:8]}", kind, params, k.classification, reason, k.rollback
    )


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
    rollback = "restore the view's online keys from the snapshot taken before; the range is marked not done in the ledger"

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


_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if not cur or redis.sha1hex(cur) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


def lease_digest(value: bytes | str) -> str:
    """sha1 of a lease value (what Redis' ``redis.sha1hex`` computes): identifies it without quoting it."""
    raw = value.encode() if isinstance(value, str) else value
    return hashlib.sha1(raw).hexdigest()  # noqa: S324 - an identity check, not security


class ReleaseLease(Kind):
    kind = "release_lease"
    rollback = "put the same lease value back with its remaining expiry (only while the view is not leased)"

    def execute(self, ctx, action):
        from fs_platform.backfill.runner import Backfiller

        p = action.params
        leases = Backfiller(ctx.platform).leases
        key = leases.key(p["view"])
        with leases.calls():
            client = leases._client
            value, pttl = client.get(key), client.pttl(key)
            if value is None:
                return {"skipped": True, "reason": "the lease is gone already"}
            if lease_digest(value) != p["digest"]:
                return {
                    "skipped": True,
                    "reason": "the lease is held by another holder than the dead one proposed",
                }
            ctx.snapshots.mkdir(parents=True, exist_ok=True)
            (ctx.snapshots / f"{action.id}.lease.json").write_text(
                json.dumps({"value": base64.b64encode(value).decode(), "pttl": pttl})
            )
            released = client.eval(_RELEASE, 1, key, p["digest"])
        return {"leases_released": int(released)}

    def undo(self, ctx, action, changed):
        from fs_platform.backfill.runner import Backfiller

        path = ctx.snapshots / f"{action.id}.lease.json"
        if not changed.get("leases_released"):
            return {"leases_restored": 0}
        saved = json.loads(path.read_text())
        leases = Backfiller(ctx.platform).leases
        with leases.calls():
            kw = {"px": saved["pttl"]} if saved["pttl"] and saved["pttl"] > 0 else {}
            ok = leases._client.set(
                leases.key(action.params["view"]), base64.b64decode(saved["value"]), nx=True, **kw
            )
        if not ok:
            raise OpsError(
                f"feature view {action.params['view']!r} is leased by another run now: the old lease was not put back"
            )
        return {"leases_restored": 1}


class DeleteViewKeys(Kind):
    kind = "delete_view_keys"
    rollback = "RESTORE every deleted key (with its expiry) and the view's schema entries from the snapshot"

    def execute(self, ctx, action):
        from fs_platform.plugins.redis_store.connection import translated
        from fs_platform.plugins.redis_store.online_store import RedisOnlineStore

        view = action.params["view"]
        if view in registered_views(ctx.store):
            raise OpsRefused(
                "view_registered", f"feature view {view!r} is registered (again): its keys are not leftovers"
            )
        state = ctx.online()
        patterns = view_patterns(state.layout, view)
        n = snapshot_keys(ctx, action.id, patterns)
        if n == 0:
            return {"skipped": True, "reason": "no keys of the view are left"}
        deleted = sum(RedisOnlineStore._delete_matching(state, pattern) for pattern in patterns)
        with translated(state.endpoint):
            fields = {
                f: v
                for f, v in state.client.hgetall(state.layout.schemas_key).items()
                if f.decode().rsplit(":", 1)[0] == view
            }
            (ctx.snapshots / f"{action.id}.schemas.json").write_text(
                json.dumps(
                    {base64.b64encode(f).decode(): base64.b64encode(v).decode() for f, v in fields.items()}
                )
            )
            if fields:
                state.client.hdel(state.layout.schemas_key, *fields)
        return {"keys_snapshotted": n, "keys_deleted": deleted, "schema_entries_deleted": len(fields)}

    def undo(self, ctx, action, changed):
        from fs_platform.plugins.redis_store.connection import translated

        state = ctx.online()
        out = restore_keys(ctx, action.id, view_patterns(state.layout, action.params["view"]))
        path = ctx.snapshots / f"{action.id}.schemas.json"
        if path.is_file():
            fields = {
                base64.b64decode(f): base64.b64decode(v) for f, v in json.loads(path.read_text()).items()
            }
            if fields:
                with translated(state.endpoint):
                    state.client.hset(state.layout.schemas_key, mapping=fields)
            out["schema_entries_restored"] = len(fields)
        return out


class RestoreDelta(Kind):
    kind = "restore_delta"
    rollback = "restore the Delta table to the version this action replaced"

    def execute(self, ctx, action):
        from deltalake import DeltaTable

        from fs_platform.plugins.delta.schema import schema_problems, table_columns
        from fs_platform.plugins.delta.tables import resolve_location

        fv = ctx.platform.feature_view(action.params["view"])
        if not schema_problems(fv, table_columns(fv, ctx.store.config)):
            return {"skipped": True, "reason": "the table's schema fits the view already"}
        table = DeltaTable(resolve_location(fv, ctx.store.config))
        before = table.version()
        table.restore(int(action.params["version"]))
        return {
            "delta_version_before": before,
            "restored_to": int(action.params["version"]),
            "delta_version_after": table.version(),
        }

    def undo(self, ctx, action, changed):
        from deltalake import DeltaTable

        from fs_platform.plugins.delta.tables import resolve_location

        if "delta_version_before" not in changed:
            return {}
        table = DeltaTable(
            resolve_location(ctx.platform.feature_view(action.params["view"]), ctx.store.config)
        )
        table.restore(int(changed["delta_version_before"]))
        return {"delta_restored_to": changed["delta_version_before"], "delta_version_after": table.version()}


class RerunValidation(Kind):
    kind = "rerun_validation"
    classification = ActionClass.READ_ONLY
    rollback = "none needed (read-only: records one more validation result)"

    def execute(self, ctx, action):
        from fs_platform.governance.validate import validate_offline

        p = action.params
        start = parse_time(p["start"]) if p.get("start") else None
        end = parse_time(p["end"]) if p.get("end") else None
        result = validate_offline(ctx.store, p["view"], start, end, mode="warn")
        return {
            "outcome": "passed" if result.passed else "failed",
            "rows": result.rows,
            "failed_checks": len(result.failures),
            "validation_run": result.run_id,
        }

    def undo(self, ctx, action, changed):
        return {}


class Teardown(Kind):
    kind = "teardown"
    classification = ActionClass.IRREVERSIBLE
    rollback = "none: deletes the project's online data and registry entries for good"

    def execute(self, ctx, action):
        raise OpsRefused("irreversible", "teardown is never run by fs ops", hint="run `fs teardown` yourself")


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Rematerialize(),
        ResumeBackfill(),
        ReleaseLease(),
        DeleteViewKeys(),
        RestoreDelta(),
        RerunValidation(),
        Teardown(),
        *MAINTENANCE_KINDS,
    )
}
ORDER = [
    "release_lease",
    "restore_delta",
    "delete_view_keys",
    "expire_view_keys",
    "resume_backfill",
    "rematerialize",
    "replay_dead_letters",
    "compact_delta",
    "vacuum_delta",
    "regenerate_catalog_docs",
    "rerun_validation",
]
"""Execution order within a plan: a dead lease goes before the run it would block, a compaction
before the vacuum that frees its files."""


def kind_of(action: Action) -> Kind:
    try:
        return KINDS[action.kind]
    except KeyError:
        raise OpsError(f"unknown action kind {action.kind!r} (known: {', '.join(KINDS)})") from None


def registered_views(store) -> set[str]:
    """Every view name the registry knows (batch, stream, on-demand)."""
    names = set()
    for lister in ("list_feature_views", "list_stream_feature_views", "list_on_demand_feature_views"):
        fn = getattr(store, lister, None)
        if fn is not None:
            names |= {v.name for v in fn()}
    return names
