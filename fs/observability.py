"""The one opt-in place for metrics and traces.

- ``REGISTRY``: the platform's Prometheus registry. Modules declare their metrics against it
  (``Counter(..., registry=REGISTRY)``), with label values from small fixed sets (feature view,
  status, topic) — never entity keys or feature values. ``serve_metrics(port)`` exposes it;
  ``write_textfile(path)`` writes the node-exporter textfile format.
- ``span(name, **attrs)``: an OpenTelemetry span around long operations (materialize, backfill,
  ingest batches, retrieval). The API is a no-op until an exporter is configured
  (``FS_OTEL_EXPORTER=console`` or a configured OTel SDK), so it costs nothing by default.
  Work done later or on another thread joins the trace it belongs to: take ``trace_context()`` where
  the work is decided and pass it as ``span(..., parent=...)`` (and ``links=`` for the other traces a
  batch also belongs to). ``traced(name)`` wraps a whole call in a span.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence

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
                log.warning(
                    "FS_OTEL_EXPORTER=console but the OpenTelemetry SDK cannot be imported (%s): "
                    "spans are not exported; pip install opentelemetry-sdk",
                    e,
                )
            else:
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
                trace.set_tracer_provider(provider)
        elif exporter:
            log.warning(
                "FS_OTEL_EXPORTER=%s is not known (only 'console'); spans go to whatever OpenTelemetry "
                "SDK the process configured, if any",
                exporter,
            )
        _tracer = trace.get_tracer("fs")
    return _tracer


def trace_context():
    """The current span's context, to parent or link work done later or on another thread; None when
    no span is recording (tracing off), so callers keep nothing then."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else None


@contextlib.contextmanager
def span(name: str, parent=None, links: Sequence = (), **attributes) -> Iterator[object]:
    """A trace span; attributes must not contain PII or secrets. ``parent``: a ``trace_context()``
    to start under instead of the current span; ``links``: more ``trace_context()`` values."""
    kwargs = {}
    if parent is not None or links:
        from opentelemetry import trace

        if parent is not None:
            kwargs["context"] = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        if links:
            kwargs["links"] = [trace.Link(c) for c in links]
    with _get_tracer().start_as_current_span(name, attributes=attributes, **kwargs) as s:
        yield s


def traced(name: str, attributes: Callable[..., dict] | None = None):
    """Decorator: each call runs in a span ``name``; ``attributes(**arguments)`` (the call's arguments by
    parameter name) gives the span's attributes."""

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            attrs = attributes(**signature.bind(*args, **kwargs).arguments) if attributes else {}
            with span(name, **attrs):
                return fn(*args, **kwargs)

        return call

    return wrap


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Expose ``REGISTRY`` at http://addr:port/metrics (a daemon thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)


def write_textfile(path: str) -> None:
    write_to_textfile(path, REGISTRY)
