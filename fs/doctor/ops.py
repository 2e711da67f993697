"""``fs ops``: plans proposed by ``fs doctor``, approved by a person, executed under the policy,
recorded in the audit log, and rolled back by action id.

    from fs_platform.doctor import doctor, ops
    report = doctor(platform)
    plan = ops.write_plan(platform, report, "plan.json", proposer="alice")      # proposal (audited)
    results = ops.apply(platform, ops.read_plan("plan.json"), approver="bob")   # policy, approval, run
    ops.rollback(platform, results[0].action.id, approver="bob")                # the way back
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from fs_platform.doctor.actions import ORDER, kind_of
from fs_platform.doctor.audit import AuditEvent, AuditLog
from fs_platform.doctor.kind import OpsContext
from fs_platform.doctor.model import Action, ActionClass, DoctorReport, Execution, OpsPlan
from fs_platform.doctor.policy import RATE_WINDOW, Policy, load_ops_settings
from fs_platform.doctor.snapshots import prune_snapshots
from fs_platform.errors import FsError, OpsError, OpsRefused
from fs_platform.plugins.delta.tables import resolve_path
from fs_platform.scrub import summary
from fs_platform.timeutil import utcnow

log = logging.getLogger(__name__)
AUTOMATION = "automation"


class Ops:
    """Policy, audit log and snapshots of one platform (repo + environment)."""

    def __init__(self, platform):
        self.platform = platform
        self.settings = load_ops_settings(platform.config)
        self.policy = Policy(self.settings, platform.env, platform.project)
        base = resolve_path(self.settings.ops_path, platform.repo_path)
        self.audit = AuditLog(base.rstrip("/") + "/audit", platform.env, platform.project)
        self.context = OpsContext(
            platform,
            Path(base) / "snapshots",
            self.settings.snapshot_max_keys,
            self.settings.rollback_retention_days,
        )

    @property
    def rollback_window(self) -> timedelta:
        return timedelta(days=self.settings.rollback_retention_days)


# -- proposal ---------------------------------------------------------------------------------------
def make_plan(platform, report: DoctorReport, *, proposer: str, origin: str = AUTOMATION) -> OpsPlan:
    """The report's actions as a plan (irreversible ones dropped: automation never proposes them)."""
    o = Ops(platform)
    actions = [a for a in report.actions if o.policy.proposable(a) is None]
    actions.sort(key=lambda a: ORDER.index(a.kind) if a.kind in ORDER else len(ORDER))
    findings = [
        {
            "check": f.check,
            "severity": str(f.severity),
            "subject": f.subject,
            "message": f.message,
            "actions": [a.id for a in f.actions],
        }
        for f in report.findings
        if f.actions
    ]
    return OpsPlan(
        f"plan-{uuid.uuid4().hex[:10]}",
        utcnow().isoformat(),
        platform.project,
        platform.env,
        proposer,
        origin,
        actions,
        findings,
    )


def write_plan(
    platform, report: DoctorReport, path: str | Path, *, proposer: str, origin: str = AUTOMATION
) -> OpsPlan:
    """Write the proposed plan to ``path`` (JSON, reviewable) and record each proposal in the audit log."""
    plan = make_plan(platform, report, proposer=proposer, origin=origin)
    Path(path).write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    audit = Ops(platform).audit
    for a in plan.actions:
        audit.append(
            "proposed",
            plan_id=plan.plan_id,
            action=a,
            actor=proposer,
            details={"params": a.params, "origin": origin, "digest": plan.digest},
            message=a.reason,
        )
    return plan


def read_plan(path: str | Path) -> OpsPlan:
    try:
        data = json.loads(Path(path).read_text())
        if data.get("fs_ops_plan") != 1:
            raise ValueError("not an fs ops plan (no fs_ops_plan: 1)")
        return OpsPlan.from_dict(data)
    except FileNotFoundError:
        raise OpsError(f"no plan file at {path}", hint="write one with `fs doctor --plan FILE`") from None
    except (ValueError, KeyError, TypeError) as e:
        raise OpsError(
            f"{path} is not a readable fs ops plan: {summary(e)}",
            hint="write one with `fs doctor --plan FILE`",
        ) from None


# -- apply ------------------------------------------------------------------------------------------
def apply(platform, plan: OpsPlan, *, approver: str | None, dry_run: bool = False) -> list[Execution]:
    """Run the plan's actions in order, each only if the policy allows it (a refused action is
    recorded with its rule and the others still go). Idempotent: an action the audit log records as
    executed is skipped; each action itself does nothing when nothing is left to do."""
    o = Ops(platform)
    out: list[Execution] = []
    for action in plan.actions:
        kind = kind_of(action)
        if kind.classification != action.classification:  # an edited plan cannot downgrade a class
            action = Action(
                action.id, action.kind, action.params, kind.classification, action.reason, kind.rollback
            )
        done = [e for e in o.audit.events(action_id=action.id) if e.event in ("executed", "skipped")]
        if done:
            out.append(
                Execution(action, "skipped", message=f"already {done[-1].event} at {done[-1].at.isoformat()}")
            )
            continue
        executed = o.audit.count("executed", utcnow() - RATE_WINDOW)
        refusal = o.policy.check(plan, action, approver, executed)
        if dry_run and refusal is not None and refusal.rule == "approval_required":
            out.append(
                Execution(action, "needs_approval", rule=refusal.rule, message="would run once approved")
            )
            continue
        if refusal is not None:
            if not dry_run:
                o.audit.append(
                    "refused",
                    plan_id=plan.plan_id,
                    action=action,
                    actor=approver,
                    rule=refusal.rule,
                    message=refusal.message,
                )
            out.append(Execution(action, "refused", rule=refusal.rule, message=str(refusal)))
            continue
        if dry_run:
            out.append(Execution(action, "would_run", message=f"{action.kind} {action.params}"))
            continue
        actor = approver or "policy (no approval needed)"
        o.audit.append(
            "approved",
            plan_id=plan.plan_id,
            action=action,
            actor=actor,
            details={"digest": plan.digest, "proposer": plan.proposer, "origin": plan.origin},
        )
        out.append(_execute(o, plan, action, actor))
    if not dry_run:
        _prune(o, utcnow())
        o.audit.compact()
    return out


def _execute(o: Ops, plan: OpsPlan, action: Action, actor: str) -> Execution:
    kind = kind_of(action)
    try:
        changed = kind.execute(o.context, action)
    except OpsRefused as e:
        o.audit.append(
            "refused", plan_id=plan.plan_id, action=action, actor=actor, rule=e.rule, message=e.message
        )
        return Execution(action, "refused", rule=e.rule, message=str(e))
    except Exception as e:
        message = str(e) if isinstance(e, FsError) else summary(e)
        log.error("ops action %s (%s) failed: %s", action.id, action.kind, message)
        o.audit.append(
            "failed",
            plan_id=plan.plan_id,
            action=action,
            actor=actor,
            details={"params": action.params},
            message=message,
        )
        return Execution(action, "failed", message=message)
    details = {"params": action.params, "changed": changed}
    if changed.get("skipped"):
        o.audit.append(
            "skipped",
            plan_id=plan.plan_id,
            action=action,
            actor=actor,
            details=details,
            message=changed.get("reason", ""),
        )
        return Execution(action, "skipped", changed, message=changed.get("reason", ""))
    status = "failed" if changed.get("ok") is False else "executed"
    o.audit.append(status, plan_id=plan.plan_id, action=action, actor=actor, details=details)
    return Execution(action, status, changed)


# -- rollback ---------------------------------------------------------------------------------------
def rollback(platform, action_id: str, *, approver: str | None) -> Execution:
    """Undo an executed action (its declared rollback), once. A rollback is the way back, so the kill
    switch and the rate limit do not block it; it needs an approver like any reversible action."""
    o = Ops(platform)
    events = o.audit.events(action_id=action_id)
    ran = [e for e in events if e.event in ("executed", "failed") and "changed" in e.details]
    if not ran:
        raise OpsError(
            f"no executed action {action_id!r} in the ops audit log of env {platform.env!r}",
            hint="`fs ops log` lists action ids",
        )
    last = ran[-1]
    if any(e.event == "rolled_back" and e.at >= last.at for e in events):
        return Execution(_action_of(last), "skipped", message="already rolled back")
    action = _action_of(last)
    if action.classification == ActionClass.READ_ONLY:
        return Execution(action, "skipped", message="read-only: nothing to roll back")
    if action.classification == ActionClass.FORWARD_ONLY:
        raise OpsError(f"{action.kind} ({action.id}) has no rollback: {action.rollback}")
    if last.at < utcnow() - o.rollback_window:
        raise OpsError(
            f"{action.kind} ({action.id}) ran at {last.at:%Y-%m-%d %H:%M} UTC, before the rollback window "
            f"(ops.rollback_retention_days: {o.settings.rollback_retention_days:g}): its snapshot is "
            "pruned and Delta vacuum may have removed the version it would restore",
            hint="restore by hand: `fs materialize` from offline, DeltaTable.restore",
        )
    if o.policy.needs_approval(action) and not approver:
        refusal = OpsRefused(
            "approval_required",
            f"rolling back {action.kind} ({action.id}) needs an approver",
            hint="confirm interactively, or pass --approved-by NAME",
        )
        o.audit.append(
            "refused",
            plan_id=last.plan_id,
            action=action,
            actor=approver,
            rule=refusal.rule,
            message=refusal.message,
        )
        raise refusal
    undone = kind_of(action).undo(o.context, action, last.details["changed"])
    o.audit.append(
        "rolled_back",
        plan_id=last.plan_id,
        action=action,
        actor=approver or "policy (no approval needed)",
        details={"params": action.params, "changed": undone},
    )
    return Execution(action, "rolled_back", undone)


def _action_of(e: AuditEvent) -> Action:
    kind = kind_of(Action(e.action_id, e.kind, {}, ActionClass.READ_ONLY, "", ""))
    return Action(
        e.action_id, e.kind, dict(e.details.get("params") or {}), kind.classification, "", kind.rollback
    )


# -- snapshot retention -----------------------------------------------------------------------------
def prune(platform, *, dry_run: bool = False, now: datetime | None = None) -> dict[str, int]:
    """Delete rollback snapshots older than ``ops.rollback_retention_days`` (each pruned action is
    audited as ``pruned``); returns bytes freed per action id."""
    return _prune(Ops(platform), now or utcnow(), dry_run=dry_run)


def _prune(o: Ops, now: datetime, *, dry_run: bool = False) -> dict[str, int]:
    pruned = prune_snapshots(o.context, now - o.rollback_window, dry_run=dry_run)
    if not dry_run:
        for action_id, freed in pruned.items():
            o.audit.append(
                "pruned",
                action_id=action_id,
                details={"bytes_freed": freed},
                message=f"rollback snapshot of {action_id} pruned after "
                f"{o.settings.rollback_retention_days:g} day(s)",
            )
    return pruned


def log_events(platform, since: datetime | None = None) -> list[AuditEvent]:
    return Ops(platform).audit.events(since)
