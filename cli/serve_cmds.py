"""``fs serve``: the online feature server (Feast's HTTP contract, fs's fast read path)."""

from __future__ import annotations

from typing import Annotated

import typer

from fs_platform.cli.state import state


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 6566, Feast's).")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Worker processes (default: one per core).")
    ] = None,
    deadline_ms: Annotated[
        float | None,
        typer.Option("--deadline-ms", min=1, help="Per-request deadline, Redis time included (default 100)."),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Settings file (default: <repo>/serve.yaml if it exists).")
    ] = None,
) -> None:
    """Serve online features over HTTP until SIGTERM (drains in-flight requests, then exits 0).

    POST /get-online-features takes and returns Feast's JSON, so a caller switches from `feast serve`
    by changing the URL; GET /health, /ready and /metrics are for load balancers and Prometheus.
    Settings (deadline, load shedding, auth, TLS): docs/serving.md.
    """
    from fs_platform.config import resolve_repo
    from fs_platform.plugins.serving import settings as serve_settings
    from fs_platform.plugins.serving.server import serve as run_server

    st = state(ctx)
    repo = resolve_repo(st.repo)
    settings = serve_settings.load(
        repo, config, host=host, port=port, workers=workers, deadline_ms=deadline_ms
    )

    def ready(s) -> None:
        scheme = "https" if s.tls else "http"
        typer.echo(
            f"fs serve: {scheme}://{s.host}:{s.port} ({s.workers} workers, deadline {s.deadline_ms:g} ms)",
            err=True,
        )

    code = run_server(repo, st.env, settings, on_ready=ready)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
