"""``fs doctor`` (top level) and ``fs ops apply|rollback|log`` (issue #16; docs/operations.md).

    fs doctor [--views V ...] [--deep] [--json] [--plan FILE] [--proposer NAME] [--assistant]
    fs doctor cost [--views V ...] [--plan FILE]
    fs doctor triage --feature-service NAME | --views V ... [--since 2h] [--note FILE] [--plan FILE]
    fs ops apply FILE [--approved-by NAME] [--dry-run] [--yes]
    fs ops rollback ACTION_ID [--approved-by NAME]
    fs ops log [--since -1d] [--json]
    fs ops prune [--dry-run]

``fs doctor`` exits 0 (ok), 3 (a warning or breach) or 1 (an error), by its worst finding.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli import exit_codes
from fs_platform.cli.args import JsonOpt, ViewsOpt, time_option
from fs_platform.cli.state import state

app = typer.Typer(
    help="Run the actions fs doctor proposed (after approval), roll them back, read the audit log.",
    no_args_is_help=True,
)

ApprovedBy = Annotated[
    str | None, typer.Option("--approved-by", help="Who approves (CI). Without it: an interactive yes/no.")
]
_STYLE = {"ok": "green", "info": "cyan", "warning": "yellow", "error": "red"}


doctor_app = typer.Typer(
    help="Every health check in one pass (exit 0 ok, 3 warning, 1 error); `fs doctor cost`, "
    "`fs doctor triage`.",
    invoke_without_command=True,
)
PlanOpt = Annotated[
    Path | None, typer.Option("--plan", help="Write the proposed actions to this plan file (JSON).")
]
ProposerOpt = Annotated[
    str | None, typer.Option("--proposer", help="Who proposes the plan (default: your user name).")
]
DeepOpt = Annotated[
    bool,
    typer.Option(
        "--deep", help="Also the expensive checks (a parity sample of tier-1 views; full key scans)."
    ),
]


@doctor_app.callback()
def doctor(
    ctx: typer.Context,
    views: ViewsOpt = None,
    deep: DeepOpt = False,
    plan: PlanOpt = None,
    proposer: ProposerOpt = None,
    check: Annotated[
        list[str] | None, typer.Option("--check", help="Run only these checks (repeat).")
    ] = None,
    assistant: Annotated[
        bool,
        typer.Option(
            "--assistant",
            help="Also ask the environment's AI assistant (ops.assistant) for a summary and proposals.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every health check in one pass: findings, evidence and proposed actions (exit 0 ok, 3 warning, 1 error)."""
    if ctx.invoked_subcommand:
        return
    from fs_platform.doctor import doctor as run_doctor

    st = state(ctx)
    _finish(
        st,
        st.output(as_json),
        run_doctor(st.platform, views, deep=deep, checks=check),
        plan,
        proposer,
        f"fs doctor ({st.platform.env}",
        assistant,
    )


@doctor_app.command("cost")
def cost_cmd(
    ctx: typer.Context,
    views: ViewsOpt = None,
    deep: DeepOpt = False,
    plan: PlanOpt = None,
    proposer: ProposerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where memory and storage go: online memory per view and feature (sampled), features no service
    uses, ttls far over their SLA, Delta tables with small or unreferenced files; each with its saving."""
    from fs_platform.doctor.cost import cost

    st = state(ctx)
    _finish(
        st,
        st.output(as_json),
        cost(st.platform, views, deep=deep),
        plan,
        proposer,
        f"fs doctor cost ({st.platform.env}",
    )


@doctor_app.command("triage")
def triage_cmd(
    ctx: typer.Context,
    feature_service: Annotated[
        str | None,
        typer.Option(
            "--feature-service", help="The feature service of the incident (its views are triaged)."
        ),
    ] = None,
    views: ViewsOpt = None,
    since: Annotated[
        str, typer.Option("--since", help="How far back the timeline goes (a duration: 30m, 2h, 1d).")
    ] = "2h",
    note: Annotated[
        Path | None, typer.Option("--note", help="Write the Markdown incident note to this file.")
    ] = None,
    deep: DeepOpt = False,
    plan: PlanOpt = None,
    proposer: ProposerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One timeline of an incident (freshness, ingest lag and dead letters, ledger runs, validations,
    registry changes, fs ops actions), the likely causes ranked, and an incident note."""
    from fs_platform.doctor.triage import triage
    from fs_platform.errors import InvalidArgument
    from fs_platform.metadata import parse_duration

    st = state(ctx)
    out = st.output(as_json)
    if not feature_service and not views:
        raise InvalidArgument("fs doctor triage needs --feature-service NAME or --views V")
    try:
        window = parse_duration(since)
    except ValueError:
        raise InvalidArgument(f"--since: expected a duration such as 30m, 2h or 1d, got {since!r}") from None
    t = triage(st.platform, feature_service=feature_service, views=views, since=window, deep=deep)
    if note:
        note.write_text(t.markdown())
    written = ops_write(st, t.report, plan, proposer)
    if out.as_json:
        out.json({**t.to_dict(), "note": str(note) if note else None, "plan": str(plan) if written else None})
    else:
        out.table(
            f"likely causes ({t.scope}, last {since})",
            ["#", "check", "subject", "what", "runbook"],
            [[i, c.check, c.subject, c.what, c.runbook] for i, c in enumerate(t.causes, 1)],
        )
        out.table(
            "timeline (UTC)",
            ["at", "source", "subject", "what"],
            [[f"{e.at:%H:%M:%S}", e.source, e.subject, e.what] for e in t.timeline],
        )
        if note:
            out.text(f"Incident note written to {note}.")
        _plan_hint(out, t.report, plan, written)


def ops_write(st, report, plan, proposer):
    from fs_platform.doctor import ops

    return ops.write_plan(st.platform, report, plan, proposer=proposer or _user()) if plan else None


def _plan_hint(out, report, plan, written) -> None:
    if written:
        out.text(
            f"Plan {written.plan_id}: {len(written.actions)} action(s) written to {plan}; review it, then "
            f"`fs ops apply {plan}`."
        )
    elif report.actions:
        out.text(f"{len(report.actions)} action(s) proposed: `--plan FILE` writes them for review.")


def _finish(st, out, report, plan, proposer, title: str, assistant: bool = False) -> None:
    """Render a report (and the assistant's advice), write its plan, exit by its worst severity."""
    from fs_platform.doctor import Severity

    advice = None
    if assistant:
        from fs_platform.doctor.assistant import advise

        advice = advise(st.platform, report)
        report = advice.merged(report)
    written = ops_write(st, report, plan, proposer)
    if out.as_json:
        out.json(
            {
                **report.to_dict(),
                "plan": str(plan) if written else None,
                **({"assistant": advice.to_dict()} if advice else {}),
            }
        )
    else:
        rows = [
            [
                f"[{_STYLE[str(f.severity)]}]{f.severity}[/]",
                f.check,
                f.subject,
                f.message,
                "\n".join(f"{a.id} {a.kind}" for a in f.actions) or "-",
            ]
            for f in report.findings
        ]
        out.table(f"{title}, {report.seconds:.1f}s)", ["", "check", "subject", "finding", "proposed"], rows)
        if advice:
            out.text(advice.render())
        _plan_hint(out, report, plan, written)
    code = {Severity.ERROR: exit_codes.ERROR, Severity.WARNING: exit_codes.BREACH}.get(
        report.worst, exit_codes.OK
    )
    if code:
        raise typer.Exit(code)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _interactive() -> bool:
    """Whether a person is at the terminal to answer a confirmation."""
    return sys.stdin.isatty()


def _approver(out, approved_by: str | None, yes: bool, what: str) -> str | None:
    """``--approved-by``, else an interactive confirmation by the user at the terminal (None: not approved)."""
    if approved_by:
        return approved_by
    if yes or not _interactive():
        return None
    return _user() if typer.confirm(f"Approve {what} as {_user()}?", default=False) else None


def _render(out, results) -> None:
    out.table(
        "fs ops",
        ["action", "kind", "class", "status", "rule", "changed / message"],
        [
            [
                r.action.id,
                r.action.kind,
                r.action.classification.value,
                r.status,
                r.rule or "",
                ", ".join(f"{k}={v}" for k, v in r.changed.items()) or r.message,
            ]
            for r in results
        ],
    )


@app.command("apply")
def apply_cmd(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(help="Plan file written by `fs doctor --plan`.")],
    approved_by: ApprovedBy = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the policy and show what would run; change nothing.")
    ] = False,
    no_input: Annotated[
        bool,
        typer.Option("--no-input", help="Never ask (unapproved actions that need approval are refused)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Execute an approved plan under the environment's policy (exit 1 if an action failed, 3 if one was refused)."""
    from fs_platform.doctor import ops

    st = state(ctx)
    out = st.output(as_json)
    plan = ops.read_plan(plan_file)
    approver = approved_by
    if not dry_run and not approved_by and not no_input and not out.as_json and _interactive():
        _render(out, ops.apply(st.platform, plan, approver=_user(), dry_run=True))  # what a yes would run
        approver = _approver(out, None, False, f"{len(plan.actions)} action(s) of {plan.plan_id}")
    results = ops.apply(st.platform, plan, approver=approver, dry_run=dry_run)
    if out.as_json:
        out.json(
            {
                "plan_id": plan.plan_id,
                "approver": approver,
                "results": [
                    {
                        "action": r.action.to_dict(),
                        "status": r.status,
                        "rule": r.rule,
                        "changed": r.changed,
                        "message": r.message,
                    }
                    for r in results
                ],
            }
        )
    else:
        _render(out, results)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(exit_codes.ERROR)
    if any(r.status == "refused" for r in results):
        raise typer.Exit(exit_codes.BREACH)


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    action_id: Annotated[str, typer.Argument(help="Action id (from `fs ops log` or the plan file).")],
    approved_by: ApprovedBy = None,
    as_json: JsonOpt = False,
) -> None:
    """Undo an executed action with its declared rollback (once)."""
    from fs_platform.doctor import ops

    st = state(ctx)
    out = st.output(as_json)
    approver = _approver(out, approved_by, out.as_json, f"the rollback of {action_id}")
    r = ops.rollback(st.platform, action_id, approver=approver)
    if out.as_json:
        return out.json(
            {"action": r.action.to_dict(), "status": r.status, "changed": r.changed, "message": r.message}
        )
    _render(out, [r])


@app.command("log")
def log_cmd(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events at or after this time (-1d, ISO 8601).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log of this environment: proposals, approvals, refusals, executions, rollbacks."""
    from fs_platform.doctor import ops

    st = state(ctx)
    out = st.output(as_json)
    events = ops.log_events(st.platform, time_option(since, "--since"))
    if out.as_json:
        return out.json([e.to_dict() for e in events])
    out.table(
        f"ops audit log ({st.platform.env})",
        ["at (UTC)", "event", "action", "kind", "view", "actor", "rule / details"],
        [
            [
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.event,
                e.action_id or "",
                e.kind or "",
                e.view or "",
                e.actor or "",
                e.rule
                or ", ".join(f"{k}={v}" for k, v in (e.details.get("changed") or {}).items())
                or e.message,
            ]
            for e in events
        ],
    )


@app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete rollback snapshots older than ops.rollback_retention_days (fs ops apply does it too);
    those actions can no longer be rolled back."""
    from fs_platform.doctor import ops

    st = state(ctx)
    out = st.output(as_json)
    pruned = ops.prune(st.platform, dry_run=dry_run)
    if out.as_json:
        return out.json({"dry_run": dry_run, "pruned": pruned})
    out.table(
        f"rollback snapshots {'to prune' if dry_run else 'pruned'}",
        ["action", "bytes"],
        [[a, n] for a, n in pruned.items()],
    )


def register(root: typer.Typer) -> None:
    root.add_typer(doctor_app, name="doctor")
    root.add_typer(app, name="ops")
