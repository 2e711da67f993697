"""One registry: the platform's metrics are defined once, and docs/observability.md lists each."""

from __future__ import annotations

from pathlib import Path

from fs_platform.governance import metrics
from fs_platform.observability import REGISTRY

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def _defined() -> list[str]:
    """Exposed names (prometheus_client keeps a Counter's name without its ``_total``)."""
    return [
        m._name + ("_total" if m._type == "counter" else "")
        for m in vars(metrics).values()
        if hasattr(m, "_name") and hasattr(m, "_labelnames")
    ]


def test_metrics_live_on_the_platform_registry():
    names = {s.name for m in REGISTRY.collect() for s in m.samples} | {m.name for m in REGISTRY.collect()}
    assert {n for n in _defined() if not n.endswith("_total")} <= names
    assert all(n.startswith("fs_") for n in _defined())


def test_observability_doc_lists_every_metric_and_span():
    text = DOC.read_text()
    missing = [n for n in _defined() if f"`{n}`" not in text]
    spans = [v for k, v in vars(metrics).items() if k.startswith("SPAN_")]
    missing += [s for s in spans if f"`{s}`" not in text]
    assert not missing
