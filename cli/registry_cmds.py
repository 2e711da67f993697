"""Core commands: apply, plan, materialize, materialize-incremental, teardown, demo."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from fs_platform.cli.args import EndArg, RelativeTimeArgs, StartArg, ViewsOpt
from fs_platform.cli.state import state


def _render_plan(out, plan, verb: str) -> None:
    rows = [[c.action, c.kind, c.name, "; ".join(c.details)] for c in plan.changes + plan.infra_changes]
    if not rows:
        out.text(f"No changes: the registry already matches the repo ({verb}).")
    else:
        out.table(f"Changes ({verb})", ["action", "kind", "name", "details"], rows)


def plan(ctx: typer.Context) -> None:
    """Show what `fs apply` would change in the registry and stores, changing nothing."""
    st = state(ctx)
    result = st.platform.plan()
    if st.as_json:
        st.out.json({"changes": result.changes, "infra_changes": result.infra_changes})
    else:
        _render_plan(st.out, result, "plan")


def apply(ctx: typer.Context) -> None:
    """Register the repo's entities, views and services and create their online tables.

    Refuses (exit 1, nothing applied) if a view or feature lacks owner, description, PII class or
    freshness SLA. Safe to run concurrently: applies to one registry are serialised by a lock.
    """
    st = state(ctx)
    result = st.platform.apply()
    if st.as_json:
        st.out.json(
            {
                "applied": result.applied,
                "changes": result.plan.changes,
                "infra_changes": result.plan.infra_changes,
            }
        )
    else:
        _render_plan(st.out, result.plan, "applied")


def materialize(
    ctx: typer.Context,
    start: StartArg,
    end: EndArg,
    views: ViewsOpt = None,
    chunk_hours: Annotated[int, typer.Option("--chunk-hours", min=1, help="Chunk size in hours.")] = 24,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Skip chunks the backfill ledger records as done (after a crash)."),
    ] = False,
) -> None:
    """Load feature values with event times in [START, END) from the offline store into the online store.

    Chunked and recorded in the backfill ledger (`fs backfill status`); one run per view at a time;
    values older than what the online store holds (e.g. fresher stream values) are skipped."""
    st = state(ctx)
    with st.out.progress() as bar:
        task = bar.add_task("materialize", total=None)

        def tick(label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"materialize {label}")

        result = st.platform.materialize(
            start, end, views, chunk=timedelta(hours=chunk_hours), progress=tick, resume=resume
        )
    if st.as_json:
        st.out.json(result)
    else:
        st.out.text(
            f"Materialized {len(result.views)} view(s) over "
            f"[{result.start.isoformat()}, {result.end.isoformat()}) "
            f"in {result.chunks_done} chunk(s) ({result.chunks_skipped} already done): "
            f"{result.rows_written} row(s) written, {result.rows_skipped} skipped "
            "(newer value online or expired)."
        )


def materialize_incremental(
    ctx: typer.Context,
    end: Annotated[
        str, typer.Argument(help="Materialize up to this time (exclusive; 2026-11-01, ISO 8601, now).")
    ],
    views: ViewsOpt = None,
) -> None:
    """Load each view's new offline data since its last materialization, up to END."""
    st = state(ctx)
    with st.out.progress() as bar:
        task = bar.add_task("materialize-incremental", total=None)

        def tick(label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"materialize {label}")

        result = st.platform.materialize_incremental(end, views, progress=tick)
    if st.as_json:
        st.out.json(result)
    else:
        st.out.text(
            f"Materialized {len(result.views)} view(s) from their watermarks up to {result.end.isoformat()} "
            f"in {result.chunks_done} chunk(s): {result.rows_written} row(s) written, "
            f"{result.rows_skipped} skipped (newer value online or expired)."
        )


def teardown(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete this project's online data and registry entries (Delta tables are kept)."""
    st = state(ctx)
    platform = st.platform
    if not yes:
        typer.confirm(
            f"Tear down project {platform.project!r} (env {platform.env}): "
            "delete its online data and registry?",
            abort=True,
        )
    platform.teardown()
    if st.as_json:
        st.out.json({"torn_down": platform.project, "env": platform.env})
    else:
        st.out.text(f"Tore down project {platform.project!r} ({platform.env}).")


def demo(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(help="Synthetic customers to generate.")] = 2000,
    merchants: Annotated[int, typer.Option(help="Synthetic merchants to generate.")] = 200,
    days: Annotated[int, typer.Option(help="Days of history to generate.")] = 14,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    stream_seconds: Annotated[
        float, typer.Option(help="Seconds to run the Kafka stream part (0 skips it).")
    ] = 10.0,
) -> None:
    """Run the end-to-end demo on embedded servers: generate data, apply, materialize, read online
    features for a few customers and build a point-in-time training frame."""
    from fs_platform.demo import run_demo

    st = state(ctx)
    with st.out.progress() as bar:
        task = bar.add_task("demo", total=None)

        def tick(label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=label)

        result = run_demo(
            st.repo,
            env=st.env,
            customers=customers,
            merchants=merchants,
            days=days,
            seed=seed,
            stream_seconds=stream_seconds,
            progress=tick,
        )
    if st.as_json:
        st.out.json(result.to_json())
        return
    for title, frame in result.frames():
        st.out.text(f"\n[bold]{title}[/bold]")
        st.out.console.print(frame.to_string(index=False, max_colwidth=28))
    for line in result.notes:
        st.out.text(line)


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
    app.command("plan")(plan)
    app.command("materialize", cls=RelativeTimeArgs)(materialize)
    app.command("materialize-incremental", cls=RelativeTimeArgs)(materialize_incremental)
    app.command("teardown")(teardown)
    app.command("demo")(demo)
