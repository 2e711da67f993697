"""The quality gates of a topic's poll batches: the expectation suites of its views that set
``meta.gate`` (strict: a failing batch is dead-lettered whole; warn: it is only reported)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from feast import FeatureView

from fs_platform.plugins.kafka_ingest.decode import BadRecord


def quality_gates(repo: Path, views: list[FeatureView]) -> list[tuple[str, str]]:
    """(view, strict|warn) for each view whose expectation suite sets ``meta.gate``."""
    from fs_platform.governance.expectations import load_suite

    gates = []
    for view in views:
        suite = load_suite(repo, view.name)
        if suite is not None and suite.gate:
            gates.append((view.name, suite.gate))
    return gates


def gate_rejection(
    store, gates: list[tuple[str, str]], views: list[FeatureView], keys: set[str], table: pa.Table
) -> BadRecord | None:
    """Run the gated views' suites on a batch; the reason to dead-letter it, if a strict one fails.
    ``keys``: the columns every view's check gets besides its features (join keys, event time)."""
    from fs_platform.governance.validate import gate

    for view, mode in gates:
        columns = [
            c
            for c in table.column_names
            if c in keys or c in {f.name for v in views if v.name == view for f in v.features}
        ]
        result = gate(store, view, table.select(columns), mode=mode, origin="ingest")
        if not result.accepted:
            return BadRecord("validation_failed", result.summary())
    return None
