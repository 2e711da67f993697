"""``fs ingest``: run the Kafka push-source ingestor, inspect its dead letters."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.state import state

app = typer.Typer(help="Kafka ingestion into push sources (declared in <repo>/ingest.yaml).", no_args_is_help=True)

TopicsOpt = Annotated[list[str] | None, typer.Option("--topic", "--topics", help="Topics to consume (repeat); default: all declared.")]
BootstrapOpt = Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers (overrides ingest.yaml).")]


def _config(st, topics=None, group=None, bootstrap=None, http_port=None):
    from plugins.kafka_ingest import load_ingest_config

    kafka = {k: v for k, v in (("group_id", group), ("bootstrap_servers", bootstrap)) if v}
    overrides = {"kafka": kafka} if kafka else {}
    if http_port is not None:
        overrides["http_port"] = http_port
    return load_ingest_config(st.platform.repo_path, st.env, overrides).select(topics)


@app.command()
def run(
    ctx: typer.Context,
    topics: TopicsOpt = None,
    group: Annotated[str | None, typer.Option("--group", help="Consumer group (overrides ingest.yaml).")] = None,
    bootstrap: BootstrapOpt = None,
    http_port: Annotated[int | None, typer.Option("--http-port", help="Serve /metrics and /health on this port.")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Stop after this many seconds (default: run until SIGTERM).")] = None,
) -> None:
    """Consume the declared topics into the online store and Delta until SIGTERM (drains, then exits)."""
    from plugins.kafka_ingest import Ingestor

    st = state(ctx)
    stats = Ingestor(st.platform, _config(st, topics, group, bootstrap, http_port)).run(
        duration_s=duration, install_signal_handlers=True)
    if st.as_json:
        st.out.json(stats.to_dict())
    else:
        st.out.table("Ingest run", ["counter", "value"], [[k, v] for k, v in stats.to_dict().items()])


@app.command()
def dlq(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Dead letters to show.")] = 50,
    bootstrap: BootstrapOpt = None,
) -> None:
    """List dead letters (reason, origin, size; payloads are never printed: they may hold PII)."""
    from plugins.kafka_ingest.deadletter import read_dead_letters
    from plugins.kafka_ingest.ingestor import kafka_client_kwargs

    st = state(ctx)
    config = _config(st, bootstrap=bootstrap)
    letters = read_dead_letters(config.dead_letter_topic, limit=limit, **kafka_client_kwargs(config))
    rows = [[d.topic, d.partition, d.offset, d.reason, d.detail, len(d.value or b"")] for d in letters]
    if st.as_json:
        st.out.json([dict(zip(["topic", "partition", "offset", "reason", "detail", "bytes"], r, strict=True)) for r in rows])
    else:
        st.out.table(f"Dead letters in {config.dead_letter_topic}", ["topic", "partition", "offset", "reason", "detail", "bytes"], rows)
