"""The one opt-in place for metrics and traces.

- ``REGISTRY``: the platform's Prometheus registry. Modules declare their metrics against it
  (``Counter(..., registry=REGISTRY)``), with label values from small fixed sets (feature view,
  status, topic) — never entity keys or feature values. ``serve_metrics(port)`` exposes it;
  ``write_textfile(path)`` writes the node-exporter textfile format.
- ``span(name, **attrs)``: an OpenTelemetry span around long operations (materialize, backfill,
  ingest batches, retrieval). The API is a no-op until an exporter is configured
  (``FS_OTEL_EXPORTER=console`` or a configured OTel SDK), so it costs nothing by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile

log = logging.getLogger(__name__)
REGISTRY = CollectorRegistry(auto_describe=True)
_tracer = None


def _get_tracer():
    global _tracer
    if _tracer is None:
        from opentelemetry import trace

        exporter = os.environ.get("FS_OTEL_EXPORTER", "").strip().lower()
        if exporter == "console":
            try:
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
            except ImportError as e:  # an exporter that was asked for and is missing is said, once
                log.warning("FS_OTEL_EXPORTER=console but the OpenTelemetry SDK cannot be imported (%s): "
                            "spans are not exported; pip install opentelemetry-sdk", e)
            else:
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
                trace.set_tracer_provider(provider)
        elif exporter:
            log.warning("FS_OTEL_EXPORTER=%s is not known (only 'console'); spans go to whatever OpenTelemetry "
                        "SDK the process configured, if any", exporter)
        _tracer = trace.get_tracer("fs")
    return _tracer


@contextlib.contextmanager
def span(name: str, **attributes) -> Iterator[object]:
    """A trace span; attributes must not contain PII or secrets."""
    with _get_tracer().start_as_current_span(name, attributes=attributes) as s:
        yield s


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Expose ``REGISTRY`` at http://addr:port/metrics (a daemon thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)


def write_textfile(path: str) -> None:
    write_to_textfile(path, REGISTRY)
