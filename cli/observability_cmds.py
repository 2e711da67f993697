"""`fs observability export DIR`: the Grafana dashboards and Prometheus alert rules
(``fs_platform.monitoring``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli.args import JsonOpt
from fs_platform.cli.state import state

app = typer.Typer(
    help="Dashboards and alert rules for the platform's metrics (docs/observability.md).",
    no_args_is_help=True,
)


@app.command("export")
def export(
    ctx: typer.Context,
    dest: Annotated[
        Path, typer.Argument(help="Directory to write grafana/*.json and prometheus/fs-alerts.yaml into.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Write the Grafana dashboards (serving, ingest, jobs, parity, quality, freshness; Grafana's JSON
    model with a Prometheus data source variable) and the Prometheus alerting rules for the SLAs.
    Existing files of the same names are overwritten."""
    from fs_platform.monitoring import export as write

    out = state(ctx).output(as_json)
    written = write(dest)
    if out.as_json:
        out.json({"written": [str(p) for p in written]})
    else:
        out.table(f"Written under {dest}", ["file"], [[str(p.relative_to(dest))] for p in written])
