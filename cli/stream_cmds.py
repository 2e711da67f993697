"""``fs stream``: run the aggregation views' stream path on an engine (the built-in ingestor or Flink)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from fs_platform.cli.args import JsonOpt, ViewsOpt
from fs_platform.cli.state import state

app = typer.Typer(
    help="The stream path of aggregation views, on the built-in ingestor or on Apache Flink (docs/flink.md).",
    no_args_is_help=True,
)


class Engine(StrEnum):
    ingestor = "ingestor"
    flink = "flink"


@app.command()
def run(
    ctx: typer.Context,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="ingestor: `fs ingest run`; flink: a Flink job "
            "(local mini-cluster, or the cluster of flink.yaml).",
        ),
    ] = Engine.ingestor,
    views: ViewsOpt = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Kafka group whose committed offsets a fresh "
            "Flink job starts from (default: ingest.yaml's group + '-flink').",
        ),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Flink: ignore checkpoints and savepoints.")] = False,
    restore: Annotated[
        str | None,
        typer.Option(
            "--restore",
            help="Flink: this checkpoint or savepoint (default: the newest under checkpoint_dir).",
        ),
    ] = None,
    checkpoint_dir: Annotated[
        str | None, typer.Option("--checkpoint-dir", help="Flink: overrides flink.yaml.")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            help="Stop after this many seconds (Flink: with a savepoint; default: run until SIGTERM).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Consume the views' topics into their tiles until SIGTERM. Flink stops with a savepoint and the
    next run restores it (or the last checkpoint after a crash)."""
    st = state(ctx)
    if engine is Engine.ingestor:
        if views:
            from fs_platform.errors import InvalidArgument

            raise InvalidArgument(
                "--views: the ingestor runs every view of its topics; select topics with "
                "`fs ingest run --topic`"
            )
        from fs_platform.cli import ingest_cmds

        ingest_cmds.run(ctx, duration=duration)
        return
    from fs_platform.plugins.flink.runner import run_flink
    from fs_platform.plugins.flink.settings import load_flink_settings
    from fs_platform.plugins.kafka_ingest import load_ingest_config

    settings = load_flink_settings(st.platform.repo_path, {"checkpoint_dir": checkpoint_dir})
    config = load_ingest_config(st.platform.repo_path, st.env)
    job = run_flink(st.platform, config, settings, views=views, group=group, fresh=fresh, restore=restore)
    savepoint = job.run_until_stopped(duration)
    out = st.output(as_json)
    if out.as_json:
        out.json({"views": list(job.plan.views), "restored_from": job.restored_from, "savepoint": savepoint})
        return
    out.table(
        "Flink stream run",
        ["item", "value"],
        [
            ["views", ", ".join(job.plan.views)],
            ["restored from", job.restored_from or "-"],
            [
                "savepoint",
                savepoint or "none: cancelled while starting (the next run restores the last checkpoint)",
            ],
        ],
    )


@app.command("install-flink")
def install_flink(ctx: typer.Context) -> None:
    """Create the Flink engine's own Python environment (.venv-flink; PyFlink cannot share the project's)."""
    from fs_platform.plugins.flink.env import install

    python = install(quiet=not state(ctx).verbose)
    state(ctx).out.table("Flink environment", ["item", "value"], [["python", str(python)]])
