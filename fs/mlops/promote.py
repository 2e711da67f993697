"""Promotion: the definitions registered in one environment applied to another, checked and approved.

    from fs_platform.mlops import promote
    p = promote.propose("feature_repo", "staging", "prod", proposer="alice")   # diff + checks (audited)
    done = promote.apply("feature_repo", "staging", "prod", promotion_id=p.promotion_id, approver="bob")

What is promoted is what the source environment's registry holds (what was tested there), not the
repo's files: the target gets exactly those definitions (``partial=False``, like ``fs apply``: objects
the source lacks are deleted from the target, with their online tables).

Checks, in order (the first two: ``fs_platform.mlops.promotion``); the first that fails refuses the
promotion and names its rule:

``policy``                  the metadata policy ``fs apply`` enforces (``fs_platform.policy``)
``model_dependency``        an MLflow model version (tag ``feast.feature_service``, not archived) uses a
                            feature service the target would lack after the promotion
``changed_since_proposal``  the diff is not the one proposed (either registry changed since)
then the target environment's ops policy (``fs_platform.doctor.policy``: kill switch, approval,
distinct approver in prod, rate limit). A promotion always needs a named approver.

Every proposal, refusal, approval and execution is a row of the target environment's ops audit log
(``fs ops log``; kind ``promote``, the promotion id as plan and action id).
"""

from __future__ import annotations

import logging

from fs_platform.doctor.model import Action, ActionClass, OpsPlan
from fs_platform.doctor.ops import Ops
from fs_platform.doctor.policy import RATE_WINDOW
from fs_platform.errors import FsError, OpsError, OpsRefused
from fs_platform.mlops.promotion import Promotion, check_refusal, compare
from fs_platform.mlops.registry import registered_contents, registry_hash
from fs_platform.platform import Platform
from fs_platform.scrub import summary
from fs_platform.timeutil import utcnow

log = logging.getLogger(__name__)

KIND = "promote"
ROLLBACK = (
    "promote the previous definitions back (their registry hash is in the audit row); "
    "online data of deleted views is not restored"
)


def _action(p: Promotion) -> Action:
    params = {"from": p.source, "to": p.target, "digest": p.digest}
    return Action(
        p.promotion_id, KIND, params, ActionClass.REVERSIBLE, f"promote {p.source} to {p.target}", ROLLBACK
    )


def _details(p: Promotion, **extra) -> dict:
    counts: dict[str, int] = {}
    for c in p.changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    return {
        "from": p.source,
        "to": p.target,
        "digest": p.digest,
        "source_registry_hash": p.source_hash,
        "target_registry_hash": p.target_hash,
        "changes": counts,
        "models_checked": p.models_checked,
        "objects": [f"{c.action} {c.kind} {c.name}" for c in p.changes][:50],
        **extra,
    }


def _open(repo, source: str, target: str) -> tuple[Platform, Platform]:
    src = Platform(repo, env=source)
    try:
        return src, Platform(repo, env=target)
    except BaseException:
        src.close()
        raise


def propose(repo, source: str, target: str, *, proposer: str) -> Promotion:
    """Diff and check a promotion; record it in the target's audit log as proposed (or refused)."""
    src, dst = _open(repo, source, target)
    try:
        p = compare(src, dst)
        p.proposer = proposer
        _record_proposal(Ops(dst), p)
        return p
    finally:
        src.close()
        dst.close()


def _record_proposal(ops: Ops, p: Promotion) -> None:
    if p.status == "nothing_to_promote":
        return
    event = "refused" if p.status == "refused" else "proposed"
    ops.audit.append(
        event,
        plan_id=p.promotion_id,
        action=_action(p),
        actor=p.proposer,
        rule=p.rule,
        details=_details(p),
        message=p.message or f"promote {p.source} to {p.target}",
    )


def apply(
    repo,
    source: str,
    target: str,
    *,
    approver: str | None,
    promotion_id: str | None = None,
    proposer: str | None = None,
) -> Promotion:
    """Apply a promotion with an approver. ``promotion_id``: an earlier proposal (its proposer and digest
    must still hold); without it the promotion is proposed (by ``proposer``) and approved in one go.
    Refusals are returned (status ``refused``) and recorded; a failed apply is recorded and raised."""
    src, dst = _open(repo, source, target)
    try:
        ops = Ops(dst)
        proposed = _proposal(ops, promotion_id) if promotion_id else None
        p = compare(src, dst, promotion_id)
        p.proposer = proposed.actor if proposed else proposer
        p.approver = approver
        if proposed is None:
            _record_proposal(ops, p)
            if p.status != "proposed":
                return p
        refusal = _approval_refusal(ops, p, proposed)
        if refusal is not None:
            p.status, p.rule, p.message = "refused", refusal.rule, str(refusal)
            ops.audit.append(
                "refused",
                plan_id=p.promotion_id,
                action=_action(p),
                actor=approver,
                rule=refusal.rule,
                details=_details(p),
                message=refusal.message,
            )
            return p
        ops.audit.append(
            "approved",
            plan_id=p.promotion_id,
            action=_action(p),
            actor=approver,
            details={"digest": p.digest, "proposer": p.proposer},
        )
        try:
            dst.apply(p.contents)
        except Exception as e:
            message = str(e) if isinstance(e, FsError) else summary(e)
            ops.audit.append(
                "failed",
                plan_id=p.promotion_id,
                action=_action(p),
                actor=approver,
                details=_details(p),
                message=message,
            )
            raise
        after = registry_hash(registered_contents(dst.store))
        ops.audit.append(
            "executed",
            plan_id=p.promotion_id,
            action=_action(p),
            actor=approver,
            details=_details(p, target_registry_hash_after=after),
        )
        p.status, p.message = "executed", f"env {target!r} now has registry {after}"
        log.info("promoted %s to %s (%s): %d change(s)", source, target, p.promotion_id, len(p.changes))
        return p
    finally:
        src.close()
        dst.close()


def _proposal(ops: Ops, promotion_id: str):
    events = [e for e in ops.audit.events(action_id=promotion_id) if e.kind == KIND]
    proposed = [e for e in events if e.event == "proposed"]
    if not proposed:
        raise OpsError(
            f"no proposed promotion {promotion_id!r} in the audit log of env {ops.platform.env!r}",
            hint="propose one with `fs promote --from ENV --to ENV` (`fs ops log` lists them)",
        )
    if any(e.event == "executed" for e in events):
        raise OpsError(f"promotion {promotion_id!r} was already executed", hint="propose a new one")
    return proposed[-1]


def _approval_refusal(ops: Ops, p: Promotion, proposed) -> OpsRefused | None:
    if proposed is not None and proposed.details.get("digest") != p.digest:
        return OpsRefused(
            "changed_since_proposal",
            f"the diff {p.source} -> {p.target} changed since {p.promotion_id} was proposed",
            hint="propose the promotion again and review the new diff",
        )
    checks = check_refusal(p)
    if checks is not None:
        return checks
    plan = OpsPlan(
        p.promotion_id,
        utcnow().isoformat(),
        p.project,
        p.target,
        p.proposer or "unknown",
        "person",
        [_action(p)],
    )
    executed = ops.audit.count("executed", utcnow() - RATE_WINDOW)
    refusal = ops.policy.check(plan, plan.actions[0], p.approver, executed)
    if refusal is None and not p.approver:
        refusal = OpsRefused(
            "approval_required",
            f"promoting {p.source} to {p.target} needs an approver",
            hint=f"`fs promote --from {p.source} --to {p.target} --approve {p.promotion_id} "
            "--approved-by NAME`",
        )
    return refusal
