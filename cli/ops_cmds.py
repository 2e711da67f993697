"""``fs ops apply|rollback|log|prune``: run the actions ``fs doctor`` proposed, under the environment's
policy and after approval; roll them back; read the audit log (issue #16; docs/operations.md).

    fs ops apply FILE [--approved-by NAME] [--dry-run] [--no-input]
    fs ops rollback ACTION_ID [--approved-by NAME]
    fs ops log [--since -1d] [--json]
    fs ops prune [--dry-run]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli import approval, exit_codes
from fs_platform.cli.args import JsonOpt, time_option
from fs_platform.cli.state import state

app = typer.Typer(
    help="Run the actions fs doctor proposed (after approval), roll them back, read the audit log.",
    no_args_is_help=True,
)

ApprovedBy = Annotated[
    str | None, typer.Option("--approved-by", help="Who approves (CI). Without it: an interactive yes/no.")
]


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
    """Execute an approved plan under the environment's policy.

    Exit 1 if an action failed, 3 if one was refused."""
    from fs_platform.doctor import ops

    st = state(ctx)
    out = st.output(as_json)
    plan = ops.read_plan(plan_file)
    approver = approved_by
    if not dry_run and not approved_by and not no_input and not out.as_json and approval.interactive():
        _render(
            out, ops.apply(st.platform, plan, approver=approval.user(), dry_run=True)
        )  # what a yes would run
        approver = approval.approver(out, None, False, f"{len(plan.actions)} action(s) of {plan.plan_id}")
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
    approver = approval.approver(out, approved_by, out.as_json, f"the rollback of {action_id}")
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
