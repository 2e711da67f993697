"""The optional AI assistant of ``fs doctor --assistant``: an OpenAI-compatible chat endpoint that
reads the findings (PII masked) and may return a summary and extra proposed actions. Off unless the
environment configures it; everything else works without it.

``ops.assistant`` (per environment, like every ops setting)::

    ops:
      assistant:
        url: http://127.0.0.1:8080/v1        # POST {url}/chat/completions
        model: ops-helper
        api_key_env: FS_ASSISTANT_API_KEY     # the key comes from the environment, never the file

The assistant must answer with one JSON object (``SCHEMA``)::

    {"summary": "one paragraph for the on-call engineer",
     "actions": [{"kind": "rematerialize", "params": {"view": "...", "start": "...", "end": "..."},
                  "reason": "why"}]}

Its proposals go through the same path as the checks': each becomes an ``Action`` of a finding of check
``assistant`` (so ``--plan`` writes it, ``fs ops apply`` applies the policy and needs the approval, the
audit log records it). What is refused never gets that far; each refusal names its rule and is audited
as ``refused`` (actor ``assistant``):

``malformed``     not JSON, not the schema, more than ``max_actions`` actions, a summary too long
``unknown_kind``  an action kind ``fs ops`` does not have
``bad_params``    params missing, unexpected, or a view that is not registered
``irreversible``  an irreversible action (teardown): never proposed by automation
``unreachable``   the endpoint did not answer in ``timeout_seconds`` (the doctor report stands)
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field

from fs_platform.doctor.model import Action, DoctorReport, Finding, Severity

log = logging.getLogger(__name__)

SCHEMA = {
    "type": "object",
    "required": ["summary"],
    "additionalProperties": False,
    "properties": {
        "summary": {"type": "string", "maxLength": 2000},
        "actions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind", "params"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"type": "string"},
                    "params": {"type": "object"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
PARAMS: dict[str, tuple[set[str], set[str]]] = {  # kind: (required, optional)
    "rematerialize": ({"view", "start", "end"}, {"chunk_seconds"}),
    "resume_backfill": ({"view", "start", "end"}, {"to", "chunk_seconds"}),
    "release_lease": ({"view", "digest"}, set()),
    "delete_view_keys": ({"view"}, set()),
    "restore_delta": ({"view", "version"}, set()),
    "rerun_validation": ({"view"}, {"start", "end"}),
    "expire_view_keys": ({"view"}, set()),
    "regenerate_catalog_docs": ({"path"}, set()),
    "compact_delta": ({"view"}, set()),
    "vacuum_delta": ({"view"}, {"retention_hours"}),
    "replay_dead_letters": ({"start", "end"}, {"letters"}),
    "teardown": (set(), {"env", "project"}),
}
_UNREGISTERED_OK = {"delete_view_keys"}  # its view is, by definition, no longer registered
SYSTEM = (
    "You help the on-call engineer of a feature platform. You receive the findings of `fs doctor` as "
    "JSON. Answer with ONE JSON object matching this JSON schema, nothing else: {schema}. Allowed action "
    "kinds and params: {params}. You only propose: a person reviews and approves every action."
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_ENTITY = re.compile(r"\b(\w+)=([^,}\s]+)")
_LONG_NUMBER = re.compile(r"\b\d{9,}\b")


class AssistantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    """Base URL of an OpenAI-compatible API (``{url}/chat/completions`` is called)."""

    model: str
    """Model name sent with each request."""

    api_key_env: str | None = "FS_ASSISTANT_API_KEY"
    """Environment variable holding the API key (sent as a bearer token; unset variable: no header)."""

    timeout_seconds: float = Field(default=20.0, gt=0)
    """Give up after this long; the doctor report stands without the assistant."""

    max_actions: int = Field(default=10, ge=0)
    """More proposed actions than this: the whole answer is refused (rule ``malformed``)."""


def mask(value):
    """Strings with e-mail addresses, ``key=value`` entity tokens and long digit runs masked, in any
    nesting (findings hold no values by design: this is the second line)."""
    if isinstance(value, str):
        value = _EMAIL.sub("<email>", value)
        value = _ENTITY.sub(lambda m: f"{m.group(1)}=<masked>", value)
        return _LONG_NUMBER.sub("<number>", value)
    if isinstance(value, dict):
        return {mask(k): mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


@dataclass
class Advice:
    enabled: bool
    summary: str | None = None
    accepted: list[Action] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {kind, rule, message}

    def merged(self, report: DoctorReport) -> DoctorReport:
        """``report`` plus one ``assistant`` finding carrying the summary and the accepted actions."""
        if not self.enabled or (self.summary is None and not self.accepted):
            return report
        finding = Finding(
            "assistant",
            Severity.INFO,
            "assistant",
            self.summary or "(no summary)",
            {"accepted": len(self.accepted), "rejected": self.rejected},
            tuple(self.accepted),
        )
        return replace(report, findings=[*report.findings, finding])

    def render(self) -> str:
        if not self.enabled:
            return "No assistant configured (ops.assistant)."
        lines = [f"Assistant: {self.summary or '(no summary)'}"]
        lines += [f"  refused {r['kind'] or '-'}: {r['message']} (rule {r['rule']})" for r in self.rejected]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "enabled": self.enabled,
            "summary": self.summary,
            "accepted": [a.to_dict() for a in self.accepted],
            "rejected": self.rejected,
        }


def settings_of(platform) -> AssistantSettings | None:
    from fs_platform.doctor.policy import load_ops_settings

    return load_ops_settings(platform.config).assistant


def advise(platform, report: DoctorReport) -> Advice:
    """Ask the configured assistant about ``report``; never raises for what it answers."""
    from fs_platform.doctor.ops import Ops

    cfg = settings_of(platform)
    if cfg is None:
        return Advice(False)
    advice = Advice(True)
    try:
        answer = _ask(cfg, report)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        rule = "unreachable" if isinstance(e, OSError) else "malformed"
        advice.rejected.append(
            {
                "kind": None,
                "rule": rule,
                "message": f"the assistant's answer was not usable: {type(e).__name__}",
            }
        )
    else:
        _check(platform, cfg, answer, advice)
    audit = Ops(platform).audit
    for r in advice.rejected:
        audit.append(
            "refused",
            actor="assistant",
            rule=r["rule"],
            message=f"assistant proposal {r['kind'] or ''}: {r['message']}",
            details={"kind": r["kind"]},
        )
    return advice


def _ask(cfg: AssistantSettings, report: DoctorReport) -> dict:
    findings = mask([f.to_dict() for f in report.findings])
    body = {
        "model": cfg.model,
        "temperature": 0,
        "response_format": {"type": "json_object"},
        "messages": [
            {
                "role": "system",
                "content": SYSTEM.format(
                    schema=json.dumps(SCHEMA),
                    params=json.dumps(
                        {k: {"required": sorted(r), "optional": sorted(o)} for k, (r, o) in PARAMS.items()}
                    ),
                ),
            },
            {
                "role": "user",
                "content": json.dumps({"env": report.env, "project": report.project, "findings": findings}),
            },
        ],
    }
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(cfg.api_key_env or "", "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        cfg.url.rstrip("/") + "/chat/completions", json.dumps(body).encode(), headers
    )
    with urllib.request.urlopen(request, timeout=cfg.timeout_seconds) as r:  # noqa: S310 - configured endpoint
        reply = json.loads(r.read())
    content = reply["choices"][0]["message"]["content"]
    answer = json.loads(content)
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    return answer


def _check(platform, cfg: AssistantSettings, answer: dict, advice: Advice) -> None:
    from fs_platform.doctor.actions import KINDS, new_action, registered_views
    from fs_platform.doctor.ops import Ops

    summary, actions = answer.get("summary"), answer.get("actions") or []
    extra = set(answer) - {"summary", "actions"}
    if (
        not isinstance(summary, str)
        or len(summary) > 2000
        or not isinstance(actions, list)
        or extra
        or len(actions) > cfg.max_actions
    ):
        advice.rejected.append(
            {
                "kind": None,
                "rule": "malformed",
                "message": "the answer does not match the schema "
                f"(summary string <= 2000, at most {cfg.max_actions} actions, no other keys)",
            }
        )
        return
    advice.summary = mask(summary)
    policy = Ops(platform).policy
    known = registered_views(platform.store)
    for item in actions:
        kind = item.get("kind") if isinstance(item, dict) else None
        params = item.get("params") if isinstance(item, dict) else None
        if not isinstance(kind, str) or not isinstance(params, dict):
            advice.rejected.append(
                {"kind": None, "rule": "malformed", "message": "an action without kind and params"}
            )
            continue
        if kind not in KINDS:
            advice.rejected.append(
                {"kind": kind, "rule": "unknown_kind", "message": f"fs ops has no action {kind!r}"}
            )
            continue
        required, optional = PARAMS[kind]
        wrong = (required - set(params)) | (set(params) - required - optional)
        view = params.get("view")
        if wrong or (view is not None and (view in known) == (kind in _UNREGISTERED_OK)):
            what = f"params {sorted(wrong)}" if wrong else f"view {view!r}"
            advice.rejected.append({"kind": kind, "rule": "bad_params", "message": f"{kind}: wrong {what}"})
            continue
        action = new_action(
            kind, params, "assistant: " + mask(str(item.get("reason") or "no reason given"))[:300]
        )
        refused = policy.proposable(action)
        if refused is not None:
            advice.rejected.append({"kind": kind, "rule": refused.rule, "message": refused.message})
            continue
        advice.accepted.append(action)
