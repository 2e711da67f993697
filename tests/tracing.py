"""Collect the platform's OpenTelemetry spans in memory (the SDK's InMemorySpanExporter).

The tracer provider is process-global and set once: the first use installs an SDK provider whose
sampler records spans only inside ``collected_spans()`` (the tests that run after it see tracing off
again); each use adds its own exporter, shut down on exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult


class _Switch(Sampler):
    on = False

    def should_sample(
        self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "tests.tracing: on inside collected_spans()"


_SWITCH = _Switch()


@contextlib.contextmanager
def collected_spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider(sampler=_SWITCH))
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    _SWITCH.on = True
    try:
        yield exporter
    finally:
        _SWITCH.on = False
        exporter.shutdown()


def named(spans, name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_of(spans, span: ReadableSpan) -> ReadableSpan | None:
    """The finished span that is ``span``'s parent (None for a root or an unfinished parent)."""
    if span.parent is None:
        return None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)
