"""``fs ingest``: run the Kafka push-source ingestor, inspect its dead letters."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fs_platform.cli.state import state

app = typer.Typer(
    help="Kafka ingestion into push sources (declared in <repo>/ingest.yaml).", no_args_is_help=True
)

TopicsOpt = Annotated[
    list[str] | None,
    typer.Option("--topic", "--topics", help="Topics to consume (repeat); default: all declared."),
]
BootstrapOpt = Annotated[
    str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers (overrides ingest.yaml).")
]


def _config(st, topics=None, group=None, bootstrap=None, http_port=None):
    from fs_platform.plugins.kafka_ingest import load_ingest_config

    kafka = {k: v for k, v in (("group_id", group), ("bootstrap_servers", bootstrap)) if v}
    overrides = {"kafka": kafka} if kafka else {}
    if http_port is not None:
        overrides["http_port"] = http_port
    return load_ingest_config(st.platform.repo_path, st.env, overrides).select(topics)


def _connected(config, duration: float | None = None):
    """``config`` once its broker answers; one line naming the address (and `fs ingest broker`) within
    a few seconds, and never later than ``--duration``, if it does not."""
    from fs_platform.plugins.kafka_ingest.broker import require_broker

    require_broker(config.kafka.bootstrap_servers, timeout_s=min(3.0, duration) if duration else 3.0)
    return config


@app.command()
def run(
    ctx: typer.Context,
    topics: TopicsOpt = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Consumer group (overrides ingest.yaml).")
    ] = None,
    bootstrap: BootstrapOpt = None,
    http_port: Annotated[
        int | None, typer.Option("--http-port", help="Serve /metrics and /health on this port.")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Stop after this many seconds (default: run until SIGTERM)."),
    ] = None,
) -> None:
    """Consume the declared topics into the online store and Delta until SIGTERM (drains, then exits)."""
    from fs_platform.plugins.kafka_ingest import Ingestor

    st = state(ctx)
    config = _connected(_config(st, topics, group, bootstrap, http_port), duration)
    stats = Ingestor(st.platform, config).run(duration_s=duration, install_signal_handlers=True)
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
    from fs_platform.plugins.kafka_ingest.config import kafka_client_kwargs
    from fs_platform.plugins.kafka_ingest.deadletter import read_dead_letters

    st = state(ctx)
    config = _connected(_config(st, bootstrap=bootstrap))
    letters = read_dead_letters(config.dead_letter_topic, limit=limit, **kafka_client_kwargs(config))
    rows = [[d.topic, d.partition, d.offset, d.reason, d.detail, len(d.value or b"")] for d in letters]
    if st.as_json:
        st.out.json(
            [
                dict(zip(["topic", "partition", "offset", "reason", "detail", "bytes"], r, strict=True))
                for r in rows
            ]
        )
    else:
        st.out.table(
            f"Dead letters in {config.dead_letter_topic}",
            ["topic", "partition", "offset", "reason", "detail", "bytes"],
            rows,
        )


def _offsets(values: list[str] | None, option: str) -> dict[int, int] | None:
    from fs_platform.errors import InvalidArgument

    if not values:
        return None
    try:
        return {int(p): int(o) for p, _, o in (v.partition("=") for v in values)}
    except ValueError:
        raise InvalidArgument(
            f"{option}: expected PARTITION=OFFSET (e.g. 0=120), got {' '.join(values)!r}"
        ) from None


OffsetsOpt = "PARTITION=OFFSET of the dead-letter topic (repeat per partition)"


@app.command("replay-dlq")
def replay_dlq(
    ctx: typer.Context,
    start: Annotated[
        list[str] | None,
        typer.Option("--start", help=f"First letter to replay: {OffsetsOpt}; default: the beginning."),
    ] = None,
    end: Annotated[
        list[str] | None,
        typer.Option("--end", help=f"Stop before: {OffsetsOpt}; default: every letter there is."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be replayed; send nothing.")
    ] = False,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Send dead letters back to their source topic once the cause is fixed (whole letters of declared
    topics that the current ingest.yaml decodes; the rest are counted, not sent). Letters stay in the
    dead-letter topic: replay a range once (`fs doctor` proposes the range not replayed yet)."""
    from fs_platform.plugins.kafka_ingest.deadletter import replay_dead_letters

    st = state(ctx)
    config = _connected(_config(st, bootstrap=bootstrap))
    result = replay_dead_letters(
        config,
        st.platform.repo_path,
        start=_offsets(start, "--start"),
        end=_offsets(end, "--end"),
        dry_run=dry_run,
    )
    if st.as_json:
        st.out.json({"dry_run": dry_run, **result.to_dict()})
    else:
        st.out.table(
            f"Dead-letter replay{' (dry run)' if dry_run else ''}",
            ["counter", "value"],
            [[k, v] for k, v in result.to_dict().items()],
        )


@app.command()
def broker(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="Port on 127.0.0.1 (default: the port of ingest.yaml's bootstrap address)."
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
) -> None:
    """Run a local Kafka-compatible broker (embedded tansu, in memory: gone when it stops) with the
    declared topics and the dead-letter topic, for `fs ingest run` on a laptop. Ctrl-C stops it."""
    import signal
    import threading

    from fs_platform.plugins.kafka_ingest.broker import EmbeddedBroker

    st = state(ctx)
    config = _config(st)
    port = port or int(config.kafka.bootstrap_servers.split(",")[0].rpartition(":")[2] or 9092)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop tansu too (it runs in its own session)
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(port=port) as running:
        topics = [t.topic for t in config.topics]
        for topic in topics:
            running.create_topic(topic, partitions=4)
        running.create_topic(config.dead_letter_topic, partitions=1)
        if st.as_json:
            st.out.json({"bootstrap": running.bootstrap, "topics": [*topics, config.dead_letter_topic]})
        else:
            st.out.text(
                f"Kafka broker (embedded tansu, in memory) on {running.bootstrap}, topics "
                f"{', '.join([*topics, config.dead_letter_topic])}. Ctrl-C stops it."
            )
        sys.stdout.flush()
        stop.wait(duration)
