"""The repair actions for what ``fs doctor`` finds besides a reload (``release_lease``,
``delete_view_keys``, ``restore_delta``, ``rerun_validation``) and ``teardown``, which fs ops never runs;
the table in ``fs_platform.doctor.actions``."""

from __future__ import annotations

import base64
import hashlib
import json

from fs_platform.doctor.kind import Kind
from fs_platform.doctor.model import ActionClass
from fs_platform.doctor.snapshots import restore_keys, snapshot_keys, view_patterns
from fs_platform.errors import OpsError, OpsRefused
from fs_platform.timeutil import parse_time

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
                f"feature view {action.params['view']!r} is leased by another run now: the old lease was not "
                "put back"
            )
        return {"leases_restored": 1}


class DeleteViewKeys(Kind):
    kind = "delete_view_keys"
    rollback = "RESTORE every deleted key (with its expiry) and the view's schema entries from the snapshot"

    def execute(self, ctx, action):
        from fs_platform.doctor.actions import registered_views
        from fs_platform.plugins.redis_store.connection import translated
        from fs_platform.plugins.redis_store.teardown import delete_matching

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
        deleted = sum(delete_matching(state, pattern) for pattern in patterns)
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
