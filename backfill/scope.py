"""Ledger scopes: which store a ledger entry describes (one ledger table serves every environment
and tenant of a repo; see ``fs_platform.backfill.ledger``).

* online entries: the online store's identity, ``online:<key_prefix>:<project>:<id>``; the id is kept
  in that store (``LeaseStore.store_id``), so another server, tenant prefix or project, or the same
  store after a teardown or a flush, is another scope;
* offline entries: the view's Delta table location, ``offline:<location>`` (environments that share
  the tables share their offline entries).
"""

from __future__ import annotations

from fs_platform.backfill.model import Target
from fs_platform.errors import FsError
from fs_platform.plugins.delta.tables import resolve_location
from fs_platform.views import feature_view


class StoreScopes:
    """``scope(view, target)`` for a ``Backfiller``'s environment; nothing is read until first asked
    (the online id costs one Redis call, then it is kept)."""

    def __init__(self, backfiller):
        self._bf = backfiller
        self._online: str | None = None
        self._offline: dict[str, str | None] = {}

    def __call__(self, view: str, target: Target) -> str | None:
        if target == Target.ONLINE:
            if self._online is None:
                leases = self._bf.leases
                self._online = f"online:{leases.namespace}{leases.store_id()}"
            return self._online
        if view not in self._offline:
            try:  # None: the view has no Delta table here (not registered in this env, a catalog table)
                location = resolve_location(feature_view(self._bf.store, view), self._bf.store.config)
            except FsError:
                location = None
            self._offline[view] = f"offline:{location}" if location else None
        return self._offline[view]
