"""Typed, idempotent actions ``fs ops apply`` runs, each through the library code the manual command
uses, each declaring (and implementing) its rollback.

================  ============  ============================================  ================================
kind              class         runs                                          rollback
================  ============  ============================================  ================================
rematerialize     reversible    ``Platform.materialize``                      restore the view's online keys
                                (``fs materialize``)                          from the snapshot taken before;
                                                                              mark the range not done in the
                                                                              ledger
resume_backfill   reversible    ``Backfiller.plan(..., resume=True)`` +       restore the Delta table's
                                ``run`` (``fs backfill VIEW --resume``)       previous version and the online
                                                                              snapshot; mark the range not
                                                                              done
release_lease     reversible    compare-and-delete of the dead holder's       put the same lease value back
                                lease (only if it is still that exact value)  (if the view is not leased
                                                                              meanwhile)
delete_view_keys  reversible    the online store's own deletion of a deleted  RESTORE every key (and its
                                view's keys (SCAN + UNLINK, as ``fs apply``)  expiry) from the snapshot taken
                                                                              before
restore_delta     reversible    ``DeltaTable.restore(version)`` to the last   restore the version it replaced
                                version whose schema fits the view
rerun_validation  read_only     ``validate_offline`` (``fs validate VIEW``)   none needed
teardown          irreversible  never run by fs ops (policy rule              -
                                ``irreversible``)
================  ============  ============================================  ================================

The kinds live in ``reload_kinds`` (rematerialize, resume_backfill), ``repair_kinds`` (the others above)
and ``maintenance`` (housekeeping); this module registers them (``KINDS``) and orders a plan (``ORDER``).

Snapshots (``<ops_path>/snapshots/<action id>.*``) hold what a rollback restores: Redis ``DUMP``
payloads with their absolute expiry, a lease value. They are data (as sensitive as the online store
itself) and are never copied into the audit log, which records only counts and versions.
"""

from __future__ import annotations

import uuid

from fs_platform.doctor.kind import Kind
from fs_platform.doctor.maintenance import MAINTENANCE_KINDS
from fs_platform.doctor.model import Action
from fs_platform.doctor.reload_kinds import Rematerialize, ResumeBackfill
from fs_platform.doctor.repair_kinds import (
    DeleteViewKeys,
    ReleaseLease,
    RerunValidation,
    RestoreDelta,
    Teardown,
)
from fs_platform.errors import OpsError


def new_action(kind: str, params: dict, reason: str) -> Action:
    k = KINDS[kind]
    return Action(
        f"{kind.split('_')[0][:6]}-{uuid.uuid4().hex[:8]}", kind, params, k.classification, reason, k.rollback
    )


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
