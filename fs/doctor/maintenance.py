"""Housekeeping actions of ``fs ops`` (registered in ``fs_platform.doctor.actions.KINDS``):

=======================  ============  ========================================  =============================
kind                     class         runs (same code as)                       rollback
=======================  ============  ========================================  =============================
expire_view_keys         reversible    PEXPIREAT each persistent key of the      RESTORE the keys (no expiry)
                                       view at event time + ttl (the store's     from the snapshot
                                       own rule)
regenerate_catalog_docs  reversible    ``write_docs``                            put the previous pages back
                                       (``fs catalog docs --out``)
compact_delta            reversible    ``DeltaTable.optimize.compact``           restore the version before
vacuum_delta             forward-only  ``DeltaTable.vacuum`` of files no         none: deleted files are gone;
                                       version of the last                       every rollback still allowed
                                       ``rollback_retention_days`` (nor the      keeps its Delta versions
                                       table's own retention) needs
replay_dead_letters      forward-only  ``replay_dead_letters``                   none: records sent to Kafka
                                       (``fs ingest replay-dlq --start --end``)  cannot be taken back
=======================  ============  ========================================  =============================
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from fs_platform.doctor.kind import Kind, OpsContext
from fs_platform.doctor.model import ActionClass
from fs_platform.doctor.snapshots import restore_keys, snapshot_keys
from fs_platform.errors import OpsError, OpsRefused
from fs_platform.timeutil import utcnow

_EVENT_US = re.compile(rb"^\[(-?\d+),")


def _table(ctx: OpsContext, view: str):
    from deltalake import DeltaTable

    from fs_platform.plugins.delta.tables import resolve_location, storage_options

    fv = ctx.platform.feature_view(view)
    return DeltaTable(
        resolve_location(fv, ctx.store.config), storage_options=storage_options(fv.batch_source) or None
    )


class ExpireViewKeys(Kind):
    kind = "expire_view_keys"
    rollback = "RESTORE the keys it gave an expiry from the snapshot, without expiry as before"

    def execute(self, ctx, action):
        from fs_platform.plugins.redis_store.connection import translated

        fv = ctx.platform.feature_view(action.params["view"])
        if not fv.ttl:
            return {"skipped": True, "reason": "the view has no ttl"}
        ttl_ms = fv.ttl.total_seconds() * 1000
        state = ctx.online()
        patterns = [state.layout.view_pattern(fv.name)]
        with translated(state.endpoint):
            keys = [k for k in state.client.scan_iter(match=patterns[0], count=state.cfg.delete_scan_count)]
            ttls = _pipelined(state.client, "pttl", keys)
            persistent = [k for k, t in zip(keys, ttls, strict=True) if t == -1]
            if not persistent:
                return {"skipped": True, "reason": "every key of the view expires"}
            n = snapshot_keys(ctx, action.id, patterns, keys=persistent)
            values = _pipelined(state.client, "get", persistent)
            now_ms = utcnow().timestamp() * 1000
            pipe = state.client.pipeline(transaction=False)
            expired = 0
            for key, value in zip(persistent, values, strict=True):
                m = _EVENT_US.match(value or b"")
                at = math.ceil(int(m.group(1)) / 1000 + ttl_ms) if m else int(now_ms + ttl_ms)
                expired += at <= now_ms
                pipe.pexpireat(key, at)
            pipe.execute()
        return {"keys_snapshotted": n, "keys_given_expiry": len(persistent), "keys_expired_at_once": expired}

    def undo(self, ctx, action, changed):
        return restore_keys(ctx, action.id, None)


def _pipelined(client, command: str, keys: list) -> list:
    out = []
    for start in range(0, len(keys), 500):
        pipe = client.pipeline(transaction=False)
        for k in keys[start : start + 500]:
            getattr(pipe, command)(k)
        out += pipe.execute()
    return out


class RegenerateCatalogDocs(Kind):
    kind = "regenerate_catalog_docs"
    rollback = "put the previous pages back (pages the action created are removed)"

    def execute(self, ctx, action):
        from fs_platform.governance.catalog import build_catalog, write_docs

        out = Path(action.params["path"])
        before = {p.name: p.read_text() for p in out.glob("*.md")} if out.is_dir() else {}
        written = write_docs(build_catalog(ctx.store), out)
        after = {p.name: p.read_text() for p in out.glob("*.md")}
        if after == before:
            return {"skipped": True, "reason": "the catalog pages are up to date"}
        ctx.snapshots.mkdir(parents=True, exist_ok=True)
        (ctx.snapshots / f"{action.id}.catalog.json").write_text(json.dumps(before))
        return {
            "pages_written": len(written),
            "pages_changed": sum(1 for n, t in after.items() if before.get(n) != t),
            "pages_removed": len(set(before) - set(after)),
        }

    def undo(self, ctx, action, changed):
        path = ctx.snapshots / f"{action.id}.catalog.json"
        if not path.is_file():
            raise OpsError(f"the rollback snapshot of action {action.id} is missing ({path})")
        before = json.loads(path.read_text())
        out = Path(action.params["path"])
        removed = 0
        for page in out.glob("*.md"):
            if page.name not in before:
                page.unlink()
                removed += 1
        for name, text in before.items():
            (out / name).write_text(text)
        return {"pages_restored": len(before), "pages_removed": removed}


class CompactDelta(Kind):
    kind = "compact_delta"
    rollback = (
        "restore the Delta table to the version before the compaction (same rows, the small files again)"
    )

    def execute(self, ctx, action):
        table = _table(ctx, action.params["view"])
        before, files = table.version(), len(table.file_uris())
        metrics = table.optimize.compact()
        if not metrics.get("numFilesRemoved"):
            return {"skipped": True, "reason": "nothing to compact"}
        return {
            "delta_version_before": before,
            "delta_version_after": table.version(),
            "files_before": files,
            "files_after": len(table.file_uris()),
        }

    def undo(self, ctx, action, changed):
        if "delta_version_before" not in changed:
            return {}
        table = _table(ctx, action.params["view"])
        table.restore(int(changed["delta_version_before"]))
        return {"delta_restored_to": changed["delta_version_before"], "delta_version_after": table.version()}


class VacuumDelta(Kind):
    kind = "vacuum_delta"
    classification = ActionClass.FORWARD_ONLY
    rollback = (
        "none: vacuum deletes files for good; it never deletes a file of the current version, of any "
        "version younger than ops.rollback_retention_days or the table's own retention, so every rollback "
        "`fs ops` still allows can restore its Delta version"
    )

    def execute(self, ctx, action):
        from deltalake.exceptions import DeltaError

        floor = ctx.rollback_retention_days * 24
        asked = action.params.get("retention_hours")
        if asked is not None and asked < floor:
            raise OpsRefused(
                "retention",
                f"vacuum of {action.params['view']!r} with {asked} h retention is shorter "
                f"than the rollback window (ops.rollback_retention_days = {floor / 24:g} days)",
                hint="ask for at least the rollback window, or shorten it deliberately",
            )
        hours = math.ceil(max(asked or 0, floor))
        table = _table(ctx, action.params["view"])
        try:
            deleted = table.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=True)
        except DeltaError as e:  # shorter than the table's delta.deletedFileRetentionDuration
            raise OpsRefused(
                "retention",
                f"vacuum of {action.params['view']!r}: {e}",
                hint="the table's delta.deletedFileRetentionDuration is longer",
            ) from None
        if not deleted:
            return {"skipped": True, "reason": f"no file older than {hours} h is unreferenced"}
        return {"files_deleted": len(deleted), "retention_hours": hours, "delta_version": table.version()}


class ReplayDeadLetters(Kind):
    kind = "replay_dead_letters"
    classification = ActionClass.FORWARD_ONLY
    rollback = (
        "none: records sent back to their topic cannot be taken back; the ingestor writes them event-time "
        "ordered (never over a newer value) and dead-letters again what still fails"
    )

    def execute(self, ctx, action):
        from fs_platform.doctor.ingest_checks import replayed_until
        from fs_platform.plugins.kafka_ingest.broker import require_broker
        from fs_platform.plugins.kafka_ingest.config import load_ingest_config
        from fs_platform.plugins.kafka_ingest.deadletter import replay_dead_letters

        p = action.params
        done = replayed_until(ctx.platform)  # another plan may have replayed part of the range
        start = {int(k): max(int(v), done.get(int(k), 0)) for k, v in p["start"].items()}
        end = {int(k): int(v) for k, v in p["end"].items()}
        if all(start.get(k, 0) >= v for k, v in end.items()):
            return {"skipped": True, "reason": "the range was replayed already"}
        config = load_ingest_config(ctx.platform.repo_path, ctx.platform.env)
        require_broker(config.kafka.bootstrap_servers, timeout_s=3.0)
        result = replay_dead_letters(config, ctx.platform.repo_path, start=start, end=end)
        return {
            **result.to_dict(),
            "dlq_start_offsets": {str(k): v for k, v in start.items()},
            "dlq_end_offsets": {str(k): v for k, v in end.items()},
        }


MAINTENANCE_KINDS = (
    ExpireViewKeys(),
    RegenerateCatalogDocs(),
    CompactDelta(),
    VacuumDelta(),
    ReplayDeadLetters(),
)
