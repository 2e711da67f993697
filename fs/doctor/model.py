"""Typed results of ``fs doctor`` and ``fs ops``: findings, proposed actions, plans, executions.

A ``Finding`` is one problem (or an ``ok``) of one check on one subject (a view, the registry, the
online store, a lease); it carries its evidence (counts, versions, times, names: never feature
values or entity keys) and the ``Action`` s that would fix it. Actions are proposed, never taken
here: ``fs doctor --plan FILE`` writes them to a plan file and ``fs ops apply FILE`` runs them
after the policy (``fs_platform.doctor.policy``) and a person approved them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any


class Severity(IntEnum):
    OK = 0
    INFO = 1
    WARNING = 2
    """A breach: exit 3 (``cli.exit_codes.BREACH``)."""
    ERROR = 3
    """Something is broken or unreachable: exit 1."""

    def __str__(self) -> str:
        return self.name.lower()


class ActionClass(StrEnum):
    """How far an action can be undone (docs/operations.md, "Policy")."""

    READ_ONLY = "read_only"  # changes nothing (rerun a validation)
    REVERSIBLE = "reversible"  # changes data and declares a rollback that restores the previous state
    FORWARD_ONLY = "forward_only"
    """Has no rollback, but deletes and overwrites no current data: re-sends dead letters into their
    topic (event-time-ordered writes), vacuums files no retained version references. Proposed and
    approved like a reversible action; ``fs ops rollback`` says why there is no way back."""
    IRREVERSIBLE = "irreversible"  # deletes data for good (teardown): never proposed, never run by fs ops


@dataclass(frozen=True)
class Action:
    """One proposed action: ``kind`` (``fs_platform.doctor.actions.KINDS``) with its ``params``."""

    id: str
    kind: str
    params: dict[str, Any]
    classification: ActionClass
    reason: str
    """Why: the finding it fixes, in one line."""
    rollback: str
    """What ``fs ops rollback ID`` does after this action ran (``none needed`` for read-only ones)."""

    def to_dict(self) -> dict:
        return {**asdict(self), "classification": self.classification.value}

    @staticmethod
    def from_dict(d: dict) -> Action:
        return Action(
            d["id"],
            d["kind"],
            dict(d.get("params") or {}),
            ActionClass(d["classification"]),
            d.get("reason", ""),
            d.get("rollback", ""),
        )

    @property
    def view(self) -> str | None:
        return self.params.get("view")


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    subject: str
    """The view, or the component (``registry``, ``online_store``, ``ledger``)."""
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "severity": str(self.severity),
            "subject": self.subject,
            "message": self.message,
            "evidence": self.evidence,
            "actions": [a.to_dict() for a in self.actions],
        }


def error_finding(check: str, subject: str, e: Exception) -> Finding:
    """A check that could not run: an ``error`` finding naming why (foreign error text scrubbed)."""
    from fs_platform.errors import FsError
    from fs_platform.scrub import summary

    text = str(e) if isinstance(e, FsError) else summary(e)
    return Finding(
        check, Severity.ERROR, subject, f"{check} check failed: {text}", {"error": type(e).__name__}
    )


@dataclass(frozen=True)
class DoctorReport:
    checked_at: datetime
    env: str
    project: str
    findings: list[Finding]
    checks: list[str]
    """The checks that ran (a check with nothing to report adds an ``ok`` finding)."""
    seconds: float = 0.0

    @property
    def worst(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.OK)

    @property
    def actions(self) -> list[Action]:
        seen, out = set(), []
        for f in self.findings:
            for a in f.actions:
                if a.id not in seen:
                    seen.add(a.id)
                    out.append(a)
        return out

    def to_dict(self) -> dict:
        return {
            "checked_at": self.checked_at.isoformat(),
            "env": self.env,
            "project": self.project,
            "worst": str(self.worst),
            "checks": self.checks,
            "seconds": round(self.seconds, 3),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class OpsPlan:
    """A reviewable plan file (JSON): the actions ``fs doctor --plan`` proposed."""

    plan_id: str
    created_at: str
    project: str
    env: str
    proposer: str
    origin: str  # automation (fs doctor) | person
    actions: list[Action]
    findings: list[dict] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """sha256 of the actions as they are now (recorded with the approval: what was approved)."""
        body = json.dumps([a.to_dict() for a in self.actions], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {
            "fs_ops_plan": 1,
            "plan_id": self.plan_id,
            "created_at": self.created_at,
            "project": self.project,
            "env": self.env,
            "proposer": self.proposer,
            "origin": self.origin,
            "digest": self.digest,
            "actions": [a.to_dict() for a in self.actions],
            "findings": self.findings,
        }

    @staticmethod
    def from_dict(d: dict) -> OpsPlan:
        return OpsPlan(
            d["plan_id"],
            d["created_at"],
            d["project"],
            d["env"],
            d["proposer"],
            d["origin"],
            [Action.from_dict(a) for a in d.get("actions") or []],
            list(d.get("findings") or []),
        )


@dataclass
class Execution:
    """What one action did (or would do: ``dry_run``), as recorded in the audit log."""

    action: Action
    status: str  # executed | skipped | refused | failed | rolled_back; dry runs: would_run | needs_approval
    changed: dict[str, Any] = field(default_factory=dict)
    """Counts and versions only (keys deleted, rows written, Delta versions), never values or keys."""
    rule: str | None = None
    message: str = ""
