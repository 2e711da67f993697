"""Snapshots of online keys (``<ops_path>/snapshots/<action id>.*``): what a rollback restores, Redis
``DUMP`` payloads with their absolute expiry. Data as sensitive as the online store itself, never copied
into the audit log (which records only counts), pruned after ``ops.rollback_retention_days``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from fs_platform.doctor.kind import OpsContext
from fs_platform.errors import OpsError
from fs_platform.plugins.redis_store.tile_store import MARKS  # an aggregation view's offset marks
from fs_platform.timeutil import utcnow

log = logging.getLogger(__name__)

_SNAP = pa.schema([("key", pa.binary()), ("dump", pa.binary()), ("expire_at_ms", pa.int64())])


def view_patterns(layout, view: str) -> list[str]:
    return [layout.view_pattern(view), layout.view_pattern(view) + MARKS]


def _scan(client, patterns: Iterable[str], count: int = 1000) -> list[bytes]:
    keys: list[bytes] = []
    for pattern in patterns:
        keys += list(client.scan_iter(match=pattern, count=count))
    return keys


def snapshot_keys(
    ctx: OpsContext, action_id: str, patterns: list[str], keys: list[bytes] | None = None
) -> int:
    """DUMP every key matching ``patterns`` (or just ``keys``) with its absolute expiry to
    ``<snapshots>/<id>.keys.parquet``."""
    from fs_platform.plugins.redis_store.connection import translated

    state = ctx.online()
    with translated(state.endpoint):
        keys = _scan(state.client, patterns, state.cfg.delete_scan_count) if keys is None else keys
        if len(keys) > ctx.snapshot_max_keys:
            raise OpsError(
                f"{len(keys)} online keys would change, more than ops.snapshot_max_keys "
                f"({ctx.snapshot_max_keys}): no rollback snapshot possible, so not run",
                hint="run the manual command instead, or raise ops.snapshot_max_keys",
            )
        rows = {"key": [], "dump": [], "expire_at_ms": []}
        now_ms = int(utcnow().timestamp() * 1000)
        for start in range(0, len(keys), 500):
            page = keys[start : start + 500]
            pipe = state.client.pipeline(transaction=False)
            for k in page:
                pipe.dump(k)
                pipe.pttl(k)
            replies = pipe.execute()
            for k, dump, pttl in zip(page, replies[0::2], replies[1::2], strict=True):
                if dump is None:  # gone meanwhile
                    continue
                rows["key"].append(k)
                rows["dump"].append(dump)
                rows["expire_at_ms"].append(now_ms + pttl if pttl and pttl > 0 else 0)
    ctx.snapshots.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows, schema=_SNAP), ctx.snapshots / f"{action_id}.keys.parquet")
    return len(rows["key"])


def prune_snapshots(ctx: OpsContext, older_than: datetime, *, dry_run: bool = False) -> dict[str, int]:
    """Delete the snapshot files last written before ``older_than``; returns bytes freed per action id
    (their rollback is no longer possible: ``fs ops rollback`` says so)."""
    pruned: dict[str, int] = {}
    if not ctx.snapshots.is_dir():
        return pruned
    cutoff = older_than.timestamp()
    for path in sorted(ctx.snapshots.iterdir()):
        st = path.stat()
        if not path.is_file() or st.st_mtime >= cutoff:
            continue
        action_id = path.name.split(".", 1)[0]
        pruned[action_id] = pruned.get(action_id, 0) + st.st_size
        if not dry_run:
            path.unlink()
    return pruned


def restore_keys(ctx: OpsContext, action_id: str, patterns: list[str] | None) -> dict:
    """Make the keys matching ``patterns`` what the snapshot holds: keys created since are deleted
    (``patterns`` None: only the snapshot's keys are touched), snapshot keys restored (REPLACE) with
    their original absolute expiry (already expired: left deleted)."""
    from fs_platform.plugins.redis_store.connection import translated

    path = ctx.snapshots / f"{action_id}.keys.parquet"
    if not path.is_file():
        raise OpsError(
            f"the rollback snapshot of action {action_id} is missing ({path}; pruned after "
            "ops.rollback_retention_days?)",
            hint="restore the online values with `fs materialize` from offline instead",
        )
    snap = pq.read_table(path).to_pylist()
    kept = {r["key"] for r in snap}
    state = ctx.online()
    now_ms = int(utcnow().timestamp() * 1000)
    deleted = restored = 0
    with translated(state.endpoint):
        found = _scan(state.client, patterns, state.cfg.delete_scan_count) if patterns else []
        extra = [k for k in found if k not in kept]
        for start in range(0, len(extra), 500):
            deleted += state.client.unlink(*extra[start : start + 500])
        for start in range(0, len(snap), 500):
            pipe = state.client.pipeline(transaction=False)
            for r in snap[start : start + 500]:
                if r["expire_at_ms"] and r["expire_at_ms"] <= now_ms:
                    pipe.delete(r["key"])  # it would have expired by now
                    continue
                pipe.restore(
                    r["key"], r["expire_at_ms"], r["dump"], replace=True, absttl=bool(r["expire_at_ms"])
                )
                restored += 1
            pipe.execute()
    return {"keys_restored": restored, "keys_deleted": deleted}
