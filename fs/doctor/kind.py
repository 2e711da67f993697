"""What every ``fs ops`` action kind is (``Kind``) and what it runs against (``OpsContext``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fs_platform.doctor.model import Action, ActionClass
from fs_platform.errors import OpsError


@dataclass
class OpsContext:
    platform: Any
    snapshots: Path
    snapshot_max_keys: int = 200_000
    rollback_retention_days: float = 14

    @property
    def store(self):
        return self.platform.store

    def online(self):
        """The fs Redis store's state (client, key layout) for this environment."""
        from fs_platform.backfill.online import redis_store

        return redis_store(self.store).state(self.store.config)


class Kind:
    kind = ""
    classification = ActionClass.REVERSIBLE
    rollback = ""
    """What ``fs ops rollback`` does; for a forward-only kind, why there is no way back."""

    def execute(self, ctx: OpsContext, action: Action) -> dict:
        """Do it; returns what changed (counts, versions; ``skipped`` when nothing was left to do)."""
        raise NotImplementedError

    def undo(self, ctx: OpsContext, action: Action, changed: dict) -> dict:
        raise OpsError(f"{self.kind} has no rollback")
