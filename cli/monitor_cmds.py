"""`fs monitor freshness` and `fs monitor drift`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli import exit_codes
from fs_platform.cli.args import window_option
from fs_platform.cli.state import state

app = typer.Typer(help="Freshness and drift monitoring (exit 3 on a breach).", no_args_is_help=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@app.command("freshness")
def freshness(
    ctx: typer.Context,
    views: Annotated[
        list[str] | None, typer.Option("--view", help="Views to check (repeat); default: all with an SLA.")
    ] = None,
    prom_file: Annotated[
        Path | None,
        typer.Option("--prom-file", help="Also write the freshness gauges as a Prometheus textfile here."),
    ] = None,
) -> None:
    """Age of each view's newest data online and offline vs its freshness SLA; exit 3 on a breach."""
    from fs_platform.governance.freshness import check_freshness

    st = state(ctx)
    report = check_freshness(st.platform.store, views)
    if prom_file:
        from fs_platform.observability import write_textfile

        write_textfile(str(prom_file))
    if st.as_json:
        st.out.json({"checked_at": report.checked_at, "views": report.views, "breached": report.breached})
    else:
        rows = [
            [
                v.view,
                _age(v.sla_seconds),
                _age(v.offline.age_seconds),
                "-" if v.online is None else _age(v.online.age_seconds),
                "BREACH" if v.breached else "ok",
            ]
            for v in report.views
        ]
        st.out.table("Freshness", ["view", "SLA", "offline age", "online age", ""], rows)
    if report.breached:
        raise typer.Exit(exit_codes.BREACH)


@app.command("drift")
def drift(
    ctx: typer.Context,
    view: Annotated[str, typer.Argument(help="Feature view.")],
    reference: Annotated[str, typer.Option("--reference", help="Reference window START..END.")],
    current: Annotated[str, typer.Option("--current", help="Current window START..END.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report with histograms here.")
    ] = None,
) -> None:
    """PSI (numeric and categorical) and KS (numeric) per feature; exit 3 if any feature drifted."""
    from fs_platform.governance.drift import detect_drift
    from fs_platform.governance.drift_html import render_html

    st = state(ctx)
    report = detect_drift(
        st.platform.store, view, window_option(reference, "--reference"), window_option(current, "--current")
    )
    if html:
        html.write_text(render_html(report))
    if st.as_json:
        st.out.json({**report.__dict__, "drifted": report.drifted, "html": str(html) if html else None})
    else:
        rows = [
            [
                f.feature,
                f.kind,
                f"{f.psi:.3f} / {f.psi_threshold}",
                "-" if f.ks is None else f"{f.ks:.3f} / {f.ks_threshold}",
                "DRIFT" if f.drifted else "ok",
            ]
            for f in report.features
        ]
        st.out.table(f"Drift of {view}", ["feature", "kind", "PSI / max", "KS / max", ""], rows)
        if html:
            st.out.text(f"HTML report: {html}")
    if report.drifted:
        raise typer.Exit(exit_codes.BREACH)
