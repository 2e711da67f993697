"""``fs doctor`` (top level), ``fs doctor cost`` and ``fs doctor triage`` (issue #16; docs/operations.md);
``fs ops`` (``cli/ops_cmds.py``) runs the plans they write.

    fs doctor [--views V ...] [--deep] [--json] [--plan FILE] [--proposer NAME] [--assistant]
    fs doctor cost [--views V ...] [--plan FILE]
    fs doctor triage --feature-service NAME | --views V ... [--since 2h] [--note FILE] [--plan FILE]

``fs doctor`` exits 0 (ok), 3 (a warning or breach) or 1 (an error), by its worst finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli import approval, exit_codes
from fs_platform.cli.args import JsonOpt, ViewsOpt
from fs_platform.cli.state import state

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
    """Every health check in one pass: findings, evidence and proposed actions (exit 0 ok, 3 warning,
    1 error)."""
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

    return ops.write_plan(st.platform, report, plan, proposer=proposer or approval.user()) if plan else None


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


def register(root: typer.Typer) -> None:
    root.add_typer(doctor_app, name="doctor")
