"""Guardrails as policy: which proposed actions ``fs ops`` may run, per environment.

``ops:`` section of feature_store.yaml (every field has a default; ``envs/<env>.yaml`` overrides it
per environment like everything else)::

    ops:
      approval_required: [reversible, forward_only, irreversible]   # classes that need an approver
      distinct_approver: true                          # default: true in prod, false elsewhere
      rate_limit_per_hour: 20                          # executed actions per rolling hour (audit log)
      kill_switch: false                               # true (or FS_OPS_KILL_SWITCH=1): refuse everything
      ops_path: data/_fs/ops                           # audit log (Delta) and rollback snapshots
      rollback_retention_days: 14                      # snapshots pruned after; vacuum keeps this much
      catalog_docs: ../docs/catalog                    # catalog pages fs doctor checks (default: unset)
      assistant: {url: http://127.0.0.1:8080/v1, model: ops-helper}   # optional AI assistant (default: off)

Rules, checked in this order for every action (the first that refuses names itself in the
``OpsRefused`` error and in the audit log):

``kill_switch``        all actions refused (config, or ``FS_OPS_KILL_SWITCH=1`` without a deploy)
``env_mismatch``       a plan proposed for another environment or project
``irreversible``       irreversible actions are never proposed by automation nor run by ``fs ops``
``approval_required``  the action's class needs an approver and none was given
``distinct_approver``  the approver proposed the plan (prod by default)
``rate_limit``         this environment already executed ``rate_limit_per_hour`` actions in the last hour
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fs_platform.config import first_error
from fs_platform.doctor.assistant import AssistantSettings
from fs_platform.doctor.model import Action, ActionClass, OpsPlan
from fs_platform.errors import ConfigError, OpsRefused

KILL_SWITCH_ENV = "FS_OPS_KILL_SWITCH"
RATE_WINDOW = timedelta(hours=1)


class OpsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval_required: list[ActionClass] = [
        ActionClass.REVERSIBLE,
        ActionClass.FORWARD_ONLY,
        ActionClass.IRREVERSIBLE,
    ]
    """Action classes that run only with a named approver (``--approved-by`` or an interactive yes)."""

    distinct_approver: bool | None = None
    """The approver must not be the plan's proposer. Default: true in ``prod``, false elsewhere."""

    rate_limit_per_hour: int = Field(default=20, ge=0)
    """At most this many actions executed per rolling hour in this environment (counted in the audit
    log, so across processes and hosts sharing it). 0 refuses every action."""

    kill_switch: bool = False
    """Refuse every action (``FS_OPS_KILL_SWITCH=1`` in the environment does the same without a deploy)."""

    ops_path: str = "data/_fs/ops"
    """Folder of the audit log (``<ops_path>/audit``, a Delta table) and the rollback snapshots
    (``<ops_path>/snapshots``, local disk); relative paths are inside the feature repo."""

    snapshot_max_keys: int = Field(default=200_000, ge=0)
    """An online action snapshots the keys it may change (for its rollback) before changing anything;
    above this many keys it does not run (``failed``: it could not be rolled back)."""

    catalog_docs: str | None = None
    """Folder of the catalog pages ``fs catalog docs --out`` writes (relative: inside the feature repo,
    e.g. ``../docs/catalog``). Set: ``fs doctor`` checks they match the registry and proposes
    ``regenerate_catalog_docs``; unset: not checked."""

    assistant: AssistantSettings | None = None
    """An OpenAI-compatible chat endpoint ``fs doctor --assistant`` asks for a summary and proposals
    (``fs_platform.doctor.assistant``; docs/operations.md, "Assistant"). Unset: off."""

    rollback_retention_days: float = Field(default=14, ge=0)
    """How long an executed action can be rolled back: its snapshot files are pruned after this many
    days (``fs ops prune``, and after every ``fs ops apply``), ``fs ops rollback`` refuses older
    actions, and ``vacuum_delta`` never removes Delta files a version of this window needs."""


def load_ops_settings(repo_config) -> OpsSettings:
    raw = (getattr(repo_config, "model_extra", None) or {}).get("ops") or {}
    try:
        return OpsSettings(**raw)
    except ValidationError as e:
        where, msg = first_error(e)
        raise ConfigError(f"invalid ops.{where} in feature_store.yaml: {msg}") from None


@dataclass(frozen=True)
class Policy:
    settings: OpsSettings
    env: str
    project: str

    @property
    def kill_switch(self) -> bool:
        return self.settings.kill_switch or os.environ.get(KILL_SWITCH_ENV, "").strip().lower() in (
            "1",
            "true",
            "yes",
            "on",
        )

    @property
    def distinct_approver(self) -> bool:
        d = self.settings.distinct_approver
        return self.env == "prod" if d is None else d

    def needs_approval(self, action: Action) -> bool:
        """A forward-only action (no way back) is never easier to run than a reversible one."""
        required = set(self.settings.approval_required)
        if ActionClass.REVERSIBLE in required:
            required.add(ActionClass.FORWARD_ONLY)
        return action.classification in required

    def proposable(self, action: Action) -> OpsRefused | None:
        """Whether automation may propose ``action`` at all (irreversible: never)."""
        if action.classification == ActionClass.IRREVERSIBLE:
            return OpsRefused(
                "irreversible",
                f"{action.kind} ({action.id}) is irreversible: automation never proposes or runs it",
                hint="run the manual command yourself if it is really meant",
            )
        return None

    def check(
        self, plan: OpsPlan, action: Action, approver: str | None, executed_last_hour: int
    ) -> OpsRefused | None:
        """The first rule that refuses ``action`` of ``plan`` (module docstring), or None."""
        if self.kill_switch:
            return OpsRefused(
                "kill_switch",
                f"the ops kill switch is on in env {self.env!r}: no action runs",
                hint=f"turn it off (ops.kill_switch / {KILL_SWITCH_ENV}) once it is safe",
            )
        if plan.env != self.env or plan.project != self.project:
            return OpsRefused(
                "env_mismatch",
                f"the plan was proposed for env {plan.env!r} project {plan.project!r}, "
                f"not env {self.env!r} project {self.project!r}",
                hint="run `fs doctor --plan FILE` in this environment",
            )
        refused = self.proposable(action)
        if refused:
            return refused
        if self.needs_approval(action) and not approver:
            return OpsRefused(
                "approval_required",
                f"{action.kind} ({action.id}) is {action.classification.value} "
                f"and needs an approver in env {self.env!r}",
                hint="confirm interactively, or pass --approved-by NAME",
            )
        if approver and self.distinct_approver and approver.strip().lower() == plan.proposer.strip().lower():
            return OpsRefused(
                "distinct_approver",
                f"{approver!r} proposed this plan and cannot approve it in env {self.env!r}",
                hint="another person must approve it (--approved-by)",
            )
        if executed_last_hour >= self.settings.rate_limit_per_hour:
            return OpsRefused(
                "rate_limit",
                f"{executed_last_hour} action(s) already executed in env {self.env!r} in "
                f"the last hour (ops.rate_limit_per_hour: {self.settings.rate_limit_per_hour})",
                hint="wait, or raise ops.rate_limit_per_hour for this environment",
            )
        return None
