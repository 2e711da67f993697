"""Collect the platform's OpenTelemetry spans in memory (the SDK's InMemorySpanExporter).

The tracer provider is process-global and set once: the first use installs an SDK provider (unless one
is there) and each use adds its own exporter, shut down on exit (then it keeps nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@contextlib.contextmanager
def collected_spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()


def named(spans, name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_of(spans, span: ReadableSpan) -> ReadableSpan | None:
    """The finished span that is ``span``'s parent (None for a root or an unfinished parent)."""
    if span.parent is None:
        return None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)
