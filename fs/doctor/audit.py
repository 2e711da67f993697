"""The ops audit log: an append-only Delta table beside the backfill ledger (``<ops_path>/audit``,
default ``data/_fs/ops/audit``).

One row per event: ``proposed`` (fs doctor --plan), ``approved`` (who, when, the plan's digest),
``refused`` (the rule), ``executed`` (what changed: Delta versions, key and row counts), ``skipped``
(nothing left to do: an idempotent rerun), ``failed``, ``rolled_back``, ``pruned`` (an action's
rollback snapshot deleted after ``ops.rollback_retention_days``: bytes freed). Rows are only ever appended
(a Delta append is one atomic commit); nothing here updates or deletes them.

What a row never holds: feature values, entity keys (key names carry entity ids unless hashed),
secrets. ``details`` is JSON of counts, versions, intervals and view names; the values a rollback
needs live in the snapshot files (``<ops_path>/snapshots``), not here. Every event is counted in
``fs_ops_events_total{event, kind}``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from prometheus_client import Counter

from fs_platform.compaction import compact_small_files
from fs_platform.errors import OpsError
from fs_platform.observability import REGISTRY
from fs_platform.timeutil import utcnow

log = logging.getLogger(__name__)

OPS_EVENTS = Counter(
    "fs_ops_events_total",
    "fs ops audit events (proposed, approved, refused, executed, skipped, failed, rolled_back).",
    ["event", "kind"],
    registry=REGISTRY,
)

_COMPACT_AT_FILES = 200
EVENTS = ("proposed", "approved", "refused", "executed", "skipped", "failed", "rolled_back", "pruned")
_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("at", _TS),
        ("event", pa.string()),
        ("env", pa.string()),
        ("project", pa.string()),
        ("plan_id", pa.string()),
        ("action_id", pa.string()),
        ("kind", pa.string()),
        ("classification", pa.string()),
        ("view", pa.string()),
        ("actor", pa.string()),
        ("rule", pa.string()),
        ("details", pa.string()),
        ("message", pa.string()),
    ]
)


@dataclass(frozen=True)
class AuditEvent:
    event_id: str
    at: datetime
    event: str
    env: str
    project: str
    plan_id: str | None
    action_id: str | None
    kind: str | None
    classification: str | None
    view: str | None
    actor: str | None
    rule: str | None
    details: dict
    message: str

    def to_dict(self) -> dict:
        return {**self.__dict__, "at": self.at.isoformat()}


class AuditLog:
    def __init__(self, location: str, env: str, project: str):
        self.location, self.env, self.project = location, env, project

    def append(
        self,
        event: str,
        *,
        plan_id=None,
        action=None,
        actor=None,
        rule=None,
        details=None,
        message: str = "",
        action_id: str | None = None,
    ) -> AuditEvent:
        if event not in EVENTS:
            raise OpsError(f"unknown audit event {event!r}")
        row = AuditEvent(
            uuid.uuid4().hex[:16],
            utcnow(),
            event,
            self.env,
            self.project,
            plan_id,
            action.id if action else action_id,
            action.kind if action else None,
            action.classification.value if action else None,
            action.view if action else None,
            actor,
            rule,
            dict(details or {}),
            " ".join(message.split())[:500],
        )
        table = pa.Table.from_pylist(
            [{**row.__dict__, "details": json.dumps(row.details, sort_keys=True, default=str)}], schema=SCHEMA
        )
        for attempt in range(5):
            try:
                write_deltalake(self.location, table, mode="append")
                break
            except (CommitFailedError, DeltaError) as e:  # a concurrent append won the commit: retry
                if attempt == 4:
                    raise OpsError(f"cannot append to the ops audit log at {self.location}: {e}") from e
                time.sleep(0.05 * 2**attempt)
        OPS_EVENTS.labels(event, row.kind or "-").inc()
        log.info("ops audit: %s %s %s", event, row.kind or "", row.action_id or "")
        return row

    def compact(self) -> None:
        """Fold the one-row files into few once there are many (rows unchanged: reads stay fast)."""
        compact_small_files(self.location, _COMPACT_AT_FILES, "audit log")

    def events(
        self, since: datetime | None = None, *, action_id: str | None = None, all_envs: bool = False
    ) -> list[AuditEvent]:
        """Events in time order (this environment and project unless ``all_envs``)."""
        try:
            table = DeltaTable(self.location).to_pyarrow_table()
        except TableNotFoundError:
            return []
        table = table.select(SCHEMA.names).cast(SCHEMA)
        if not all_envs:
            table = table.filter((pc.field("env") == self.env) & (pc.field("project") == self.project))
        if since is not None:
            table = table.filter(pc.field("at") >= pa.scalar(since, _TS))
        if action_id is not None:
            table = table.filter(pc.field("action_id") == action_id)
        table = table.sort_by([("at", "ascending")])
        return [AuditEvent(**{**r, "details": json.loads(r["details"] or "{}")}) for r in table.to_pylist()]

    def count(self, event: str, since: datetime) -> int:
        return sum(1 for e in self.events(since) if e.event == event)
