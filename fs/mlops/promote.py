"""Promotion: the definitions registered in one environment applied to another, checked and approved.

    from fs_platform.mlops import promote
    p = promote.propose("feature_repo", "staging", "prod", proposer="alice")   # diff + checks (audited)
    done = promote.apply("feature_repo", "staging", "prod", promotion_id=p.promotion_id, approver="bob")

What is promoted is what the source environment's registry holds (what was tested there), not the
repo's files: the target gets exactly those definitions (``partial=False``, like ``fs apply``: objects
the source lacks are deleted from the target, with their online tables).

Checks, in order; the first that fails refuses the promotion and names its rule:

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

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from fs_platform import policy as metadata_policy
from fs_platform.doctor.model import Action, ActionClass, OpsPlan
from fs_platform.doctor.ops import Ops
from fs_platform.doctor.policy import RATE_WINDOW
from fs_platform.errors import FsError, OpsError, OpsRefused
from fs_platform.mlops import tracking
from fs_platform.mlops.registry import registered_contents, registry_hash
from fs_platform.platform import Platform
from fs_platform.registry_diff import Change
from fs_platform.scrub import summary
from fs_platform.timeutil import utcnow

log = logging.getLogger(__name__)

KIND = "promote"
ROLLBACK = "promote the previous definitions back (their registry hash is in the audit row); online data of deleted views is not restored"  # noqa: E501


@dataclass(frozen=True)
class ModelDependency:
    model: str
    version: str
    feature_service: str


@dataclass
class Promotion:
    """The diff and checks of one promotion, and what became of it."""

    promotion_id: str
    project: str
    source: str
    target: str
    source_hash: str
    target_hash: str
    changes: list[Change]
    policy_problems: list[str]
    missing_services: list[ModelDependency]
    models_checked: int | None
    """Model versions checked for their feature service; None: MLflow not set up (check skipped)."""
    status: str = "proposed"
    """proposed | refused | executed | nothing_to_promote"""
    rule: str | None = None
    message: str = ""
    proposer: str | None = None
    approver: str | None = None
    contents: Any = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        """sha256 of what is promoted: the two registries' hashes (their contents) and the changed
        objects, sorted (Feast lists them in no stable order). Recorded with the proposal; an approval
        applies only the same digest."""
        body = json.dumps(
            {
                "source": [self.source, self.source_hash],
                "target": [self.target, self.target_hash],
                "changes": sorted([c.action, c.kind, c.name] for c in self.changes),
            }
        )
        return hashlib.sha256(body.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {
            "promotion_id": self.promotion_id,
            "project": self.project,
            "from": self.source,
            "to": self.target,
            "status": self.status,
            "rule": self.rule,
            "message": self.message,
            "digest": self.digest,
            "source_registry_hash": self.source_hash,
            "target_registry_hash": self.target_hash,
            "changes": [
                {"action": c.action, "kind": c.kind, "name": c.name, "details": list(c.details)}
                for c in self.changes
            ],
            "policy_problems": self.policy_problems,
            "models_checked": self.models_checked,
            "missing_services": [d.__dict__ for d in self.missing_services],
            "proposer": self.proposer,
            "approver": self.approver,
        }


def compare(source: Platform, target: Platform, promotion_id: str | None = None) -> Promotion:
    """The registry diff ``source -> target`` and the checks; changes nothing, records nothing."""
    if source.env == target.env:
        raise OpsError(f"cannot promote env {source.env!r} to itself", hint="--from and --to must differ")
    contents = registered_contents(source.store)
    source_hash = registry_hash(contents)  # before the plan: Feast's inference fills the objects in
    plan = target.plan(contents)
    services = {s.name for s in contents.feature_services}
    deps = model_dependencies(target)
    result = Promotion(
        promotion_id or f"promo-{uuid.uuid4().hex[:10]}",
        target.project,
        source.env,
        target.env,
        source_hash,
        registry_hash(registered_contents(target.store)),
        [*plan.changes, *plan.infra_changes],
        metadata_policy.check_repo(contents),
        [d for d in deps or [] if d.feature_service not in services],
        None if deps is None else len(deps),
        contents=contents,
    )
    refusal = _check_refusal(result)
    if refusal is not None:
        result.status, result.rule, result.message = "refused", refusal.rule, str(refusal)
    elif not result.changes:
        result.status, result.message = (
            "nothing_to_promote",
            "the target already has the source's definitions",
        )
    return result


def model_dependencies(platform: Platform) -> list[ModelDependency] | None:
    """Model versions of ``platform``'s MLflow registry that name a feature service of its project (tag
    ``feast.feature_service``; archived versions and other projects' (tag ``feast.project``) left out).
    None when MLflow is not set up for the environment."""
    mlflow = tracking.mlflow_for(platform.config)
    if mlflow is None:
        return None
    out, token = [], None
    try:
        client = mlflow.MlflowClient()
        while True:
            page = client.search_model_versions(max_results=1000, page_token=token)
            for v in page:
                tags = v.tags or {}
                service = tags.get("feast.feature_service")
                if (
                    service
                    and v.current_stage != "Archived"
                    and tags.get("feast.project", platform.project) == platform.project
                ):
                    out.append(ModelDependency(v.name, str(v.version), service))
            token = page.token
            if not token:
                return out
    except Exception as e:
        raise tracking.error(e, platform.config) from None


def _check_refusal(p: Promotion) -> OpsRefused | None:
    if p.policy_problems:
        return OpsRefused(
            "policy",
            f"{len(p.policy_problems)} metadata policy problem(s) in env {p.source!r}: "
            f"{p.policy_problems[0]}",
            hint="fix the definitions and `fs apply` them to the source first",
        )
    if p.missing_services:
        d = p.missing_services[0]
        return OpsRefused(
            "model_dependency",
            f"model {d.model} version {d.version} uses feature service "
            f"{d.feature_service!r}, which env {p.target!r} would lack after promoting {p.source!r}"
            + (f" (and {len(p.missing_services) - 1} more)" if len(p.missing_services) > 1 else ""),
            hint="keep the feature service in the source, or archive the model version first",
        )
    return None


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
    checks = _check_refusal(p)
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
