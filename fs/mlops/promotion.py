"""One promotion's diff and checks (``compare``): what the source environment's registry holds against
the target's, the metadata policy and the MLflow model versions depending on a feature service.
Changes nothing and records nothing; ``fs_platform.mlops.promote`` proposes and applies."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from fs_platform import policy as metadata_policy
from fs_platform.errors import OpsError, OpsRefused
from fs_platform.mlops import tracking
from fs_platform.mlops.registry import registered_contents, registry_hash
from fs_platform.platform import Platform
from fs_platform.registry_diff import Change


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
    refusal = check_refusal(result)
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


def check_refusal(p: Promotion) -> OpsRefused | None:
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
