"""``fs backfill``: chunked, resumable, leased backfills and the ledger's status.

    fs backfill VIEW --start 2026-11-01 --end 2026-11-08 [--to both] [--chunk 1d] [--compute-span 7]
                     [--dry-run] [--resume] [--parallel N] [--create]
    fs backfill status [VIEW]

``fs backfill VIEW ...`` is short for ``fs backfill run VIEW ...``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

from fs_platform.cli import exit_codes
from fs_platform.cli.args import END_HELP, START_HELP, JsonOpt, duration_option, time_option
from fs_platform.cli.state import state


class _RunByDefault(TyperGroup):
    """Treat an unknown first word as a view name: ``fs backfill VIEW`` runs ``fs backfill run VIEW``."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=True,
    help=(
        "Backfill a feature view (`fs backfill VIEW --start S --end E`, short for `fs backfill run`) "
        "or show the ledger (`fs backfill status [VIEW]`). Chunks are recorded in the ledger, runs on "
        "one view are exclusive (a lease), online writes never overwrite fresher stream values."
    ),
)


@app.command("run")
def run(
    ctx: typer.Context,
    view: Annotated[str, typer.Argument(help="Feature view to backfill.")],
    start: Annotated[str, typer.Option("--start", help=START_HELP)],
    end: Annotated[str, typer.Option("--end", help=END_HELP)],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="online | offline | both. Offline recomputes the range from the view's batch definition "
            "(backfills.py) and replaces it in the view's Delta table; online then writes the range's latest "
            "values.",
        ),
    ] = "both",
    chunk: Annotated[
        str | None,
        typer.Option(
            "--chunk",
            help="Chunk size (6h, 1d, 7d; default backfill.chunk, 1d). Chunks align to the UTC grid.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (chunks, which are done, estimated source rows) and write nothing.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Skip chunks the ledger records as done (continue an interrupted run)."
        ),
    ] = False,
    parallel: Annotated[
        int,
        typer.Option("--parallel", min=1, help="Chunks computed at once (Delta commits stay one at a time)."),
    ] = 1,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Let an offline chunk replace its range with fewer rows than it holds (a correction that "
            "removes rows). Without it such a chunk is rejected: its inputs may not cover the range yet.",
        ),
    ] = False,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create the view's Delta table from the recomputed rows if it does not exist (with a "
            "warning). Without it a missing table is an error: a deleted table is never recreated silently.",
        ),
    ] = False,
    compute_span: Annotated[
        int | None,
        typer.Option(
            "--compute-span",
            min=1,
            help="Adjacent chunks recomputed in one pass of the batch definition (lookback read once per "
            "pass); each chunk is still committed and recorded on its own. Default backfill.compute_span, 7; "
            "1 = one pass per chunk.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute or reload [START, END) of VIEW, chunk by chunk (exit 1 if a chunk failed or was rejected)."""
    from fs_platform.backfill.runner import Backfiller

    st = state(ctx)
    out = st.output(as_json)
    bf = Backfiller(st.platform)
    plan = bf.plan(
        view,
        time_option(start, "--start"),
        time_option(end, "--end"),
        to=to,
        chunk=duration_option(chunk, "--chunk", positive=True),
        resume=resume,
        compute_span=compute_span,
        create=create,
    )
    if plan.create_table and not out.as_json:
        out.text(
            f"[yellow]warning: the Delta table of {view} does not exist: this run creates it "
            "(--create).[/yellow]"
        )
    if dry_run:
        return out.json({"plan": plan}) if out.as_json else _render_plan(out, plan)
    if not plan.to_run and not out.as_json:
        return out.text(f"Nothing to do: all {len(plan.chunks)} chunk(s) are done in the ledger (--resume).")
    with out.progress() as bar:
        overall = bar.add_task(f"backfill {view}", total=len(plan.to_run))
        current = bar.add_task("chunk", total=4)

        def tick(ev) -> None:
            bar.update(overall, completed=ev.chunks_done)
            step = {"compute": 1, "validate": 2, "commit": 3}.get(ev.stage, 4)
            what = f" ({ev.chunks} chunks)" if ev.chunks > 1 else ""
            bar.update(
                current,
                completed=step,
                description=f"{ev.target.value} {ev.interval.start:%Y-%m-%d %H:%M} {ev.stage}{what}",
            )

        result = bf.run(plan, parallel=parallel, progress=tick, allow_shrink=allow_shrink)
    if out.as_json:
        out.json({"plan": plan, "result": result, "ok": result.ok})
    else:
        _render_result(out, result)
    if not result.ok:
        raise typer.Exit(exit_codes.ERROR)


@app.command("status")
def status(
    ctx: typer.Context,
    view: Annotated[
        str | None, typer.Argument(help="Feature view (default: every view in the ledger).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What the ledger holds per view and target: done ranges, unfinished chunks, watermark, lease holder."""
    from fs_platform.backfill.runner import Backfiller

    st = state(ctx)
    out = st.output(as_json)
    rows = Backfiller(st.platform).status(view)
    if out.as_json:
        return out.json(rows)
    if not rows:
        return out.text(
            "The ledger has no entries for this environment's stores: nothing has been materialized or "
            "backfilled here through fs yet (each --env and tenant has its own entries)."
        )
    out.table(
        "Backfill ledger (UTC)",
        ["view", "target", "done", "unfinished", "watermark", "last", "lease"],
        [
            [
                s.view,
                s.target.value,
                "\n".join(_short(i) for i in s.done) or "-",
                "\n".join(f"{_short(e.interval)} {e.status.value}" for e in s.pending) or "-",
                f"{s.watermark:%Y-%m-%d %H:%M}" if s.watermark else "-",
                f"{s.last.kind.value} {s.last.status.value}\n"
                f"{s.last.recorded_at:%Y-%m-%d %H:%M:%S}\n{s.last.holder}"
                if s.last
                else "-",
                s.lease_holder or "free",
            ]
            for s in rows
        ],
    )


def _short(iv) -> str:
    return f"[{iv.start:%Y-%m-%d %H:%M}, {iv.end:%Y-%m-%d %H:%M})"


def _render_plan(out, plan) -> None:
    def compute_pass(c) -> str:
        i = plan.span_of(c.interval) if c.target.value == "offline" and c.will_run else None
        return "-" if i is None else str(i + 1)

    rows = [
        [
            c.target.value,
            str(c.interval),
            "done" if c.done else "-",
            "run" if c.will_run else "skip",
            compute_pass(c),
            "?" if c.estimated_rows is None else f"{c.estimated_rows:,}",
        ]
        for c in plan.chunks
    ]
    title = (
        f"Plan: {plan.kind.value} {plan.view} [{plan.start.isoformat()}, {plan.end.isoformat()}) "
        f"({plan.definition or 'online only'})"
    )
    out.table(title, ["target", "chunk", "ledger", "action", "compute pass", "est. source rows"], rows)
    if plan.lease_holder:
        out.text(f"[yellow]The view is leased by {plan.lease_holder}: a run now would be refused.[/yellow]")
    passes = f" in {len(plan.spans)} compute pass(es)" if plan.spans else ""
    out.text(
        f"{len(plan.to_run)} of {len(plan.chunks)} chunk(s) would run{passes}. "
        "Nothing was written (--dry-run)."
    )


def _render_result(out, result) -> None:
    rows = [
        [
            c.target.value,
            str(c.interval),
            c.status.value,
            c.rows_in,
            c.rows_written,
            c.rows_skipped,
            c.validation or "",
            f"{c.seconds:.1f}s",
            c.message,
        ]
        for c in result.chunks
    ]
    out.table(
        f"Backfill {result.plan.view} (run {result.run_id})",
        [
            "target",
            "chunk",
            "status",
            "rows in",
            "written",
            "skipped (newer/expired)",
            "checks",
            "time",
            "message",
        ],
        rows,
    )
    verdict = "done" if result.ok else "[red]incomplete[/red] — fix the cause, then rerun with --resume"
    out.text(f"{len(result.chunks)} chunk result(s) in {result.seconds:.1f}s: {verdict}.")
