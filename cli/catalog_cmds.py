"""`fs catalog list|show|docs` and the top-level `fs validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli import exit_codes
from fs_platform.cli.args import END_HELP, START_HELP, time_option
from fs_platform.cli.state import state

app = typer.Typer(
    help="The feature catalog: owners, descriptions, PII classes, freshness SLAs.", no_args_is_help=True
)


@app.command("list")
def list_views(ctx: typer.Context) -> None:
    """List feature views with owner, team, tier, freshness SLA and PII features."""
    from fs_platform.governance.catalog import build_catalog

    st = state(ctx)
    cat = build_catalog(st.platform.store)
    if st.as_json:
        return st.out.json(cat)
    rows = [
        [v.name, v.kind, v.team, v.tier, v.owner, v.freshness_sla or "-", ", ".join(v.pii_features) or "-"]
        for v in cat.views
    ]
    st.out.table(
        f"Feature views ({cat.project})", ["view", "kind", "team", "tier", "owner", "SLA", "PII"], rows
    )


@app.command("show")
def show(ctx: typer.Context, view: Annotated[str, typer.Argument(help="Feature view name.")]) -> None:
    """Everything the catalog knows about one view, feature by feature."""
    from fs_platform.governance.catalog import build_catalog, view_page

    st = state(ctx)
    info = build_catalog(st.platform.store).view(view)
    if st.as_json:
        return st.out.json(info)
    st.out.console.print(view_page(info).split("\n", 1)[1], markup=False)


@app.command("docs")
def docs(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Folder for the Markdown pages.")] = Path("docs/catalog"),
) -> None:
    """Write the catalog as Markdown pages (index.md + one page per view) from the registry."""
    from fs_platform.governance.catalog import build_catalog, write_docs

    st = state(ctx)
    written = write_docs(build_catalog(st.platform.store), out)
    if st.as_json:
        return st.out.json({"written": [str(p) for p in written]})
    st.out.text(f"Wrote {len(written)} page(s) to {out}/")


def validate(
    ctx: typer.Context,
    view: Annotated[
        str | None, typer.Argument(help="Feature view to validate (or to filter --list by).")
    ] = None,
    start: Annotated[str | None, typer.Option(help=START_HELP)] = None,
    end: Annotated[str | None, typer.Option(help=END_HELP)] = None,
    warn: Annotated[bool, typer.Option("--warn", help="Record failures but exit 0.")] = False,
    list_: Annotated[
        bool, typer.Option("--list", help="List stored validation results instead (newest first).")
    ] = False,
    failed: Annotated[bool, typer.Option("--failed", help="With --list: only failed runs.")] = False,
    limit: Annotated[int, typer.Option(help="With --list: at most this many results.")] = 20,
) -> None:
    """Run VIEW's expectation suite on its offline data in [START, END); exit 3 if it fails."""
    from fs_platform.governance import validate as v

    st = state(ctx)
    store = st.platform.store
    if list_:
        results = v.list_results(store, view, limit, failed)
        if st.as_json:
            return st.out.json([r.to_dict() for r in results])
        rows = [
            [
                r.checked_at.isoformat(timespec="seconds"),
                r.view,
                r.origin,
                r.mode,
                r.outcome,
                r.rows,
                f"{len(r.failures)}/{len(r.checks)}",
            ]
            for r in results
        ]
        return st.out.table(
            "Validation results", ["checked at", "view", "origin", "mode", "outcome", "rows", "failed"], rows
        )
    if not view:
        raise typer.BadParameter("give a VIEW to validate, or --list")
    window = time_option(start, "--start"), time_option(end, "--end")
    result = v.validate_offline(store, view, *window, mode="warn" if warn else "strict")
    if st.as_json:
        st.out.json(result.to_dict())
    else:
        rows = [
            [
                "ok" if c.success else "FAIL",
                c.check,
                c.column or "",
                c.unexpected_count if c.unexpected_count is not None else "",
                ", ".join(map(str, c.samples[:3])),
                c.detail or "",
            ]
            for c in result.checks
        ]
        st.out.table(result.summary(), ["", "check", "column", "unexpected", "samples", "detail"], rows)
    if not result.accepted:
        raise typer.Exit(exit_codes.BREACH)


def register(root: typer.Typer) -> None:
    root.command("validate")(validate)
