"""The per-chunk validation hook (the data-quality gate plugs in here).

A check is any callable ``(view, interval, data) -> ValidationOutcome | bool``:

* ``view``: feature view name; ``interval``: the chunk's half-open UTC ``Interval``;
* ``data``: the chunk's rows as a ``pyarrow.Table`` (``data.to_pandas()`` for pandas) — for an
  offline backfill the recomputed rows, for an online write the rows about to be written.

It runs after the chunk is computed and before anything is committed. Wrapped in a ``ChunkCheck``
with ``mode="strict"`` a failure rejects the chunk (ledger status ``rejected``, nothing written, the
run goes on with the next chunk and reports failure); with ``mode="warn"`` the chunk is committed and
the ledger records ``validation=warn`` with the details. Checks come from ``Backfiller(checks=...)``
and from module-level ``ChunkCheck`` objects in the repo's ``backfills.py``. Details end up in the
ledger: never put feature values of PII-classified features in them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from fs_platform.backfill.model import Interval


@dataclass(frozen=True)
class ValidationOutcome:
    passed: bool
    details: str = ""


Check = Callable[[str, Interval, pa.Table], "ValidationOutcome | bool"]


@dataclass(frozen=True)
class ChunkCheck:
    check: Check
    mode: Literal["strict", "warn"] = "strict"
    views: tuple[str, ...] | None = None
    """Only these views (default: every view)."""
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or getattr(self.check, "__name__", "check")


@dataclass(frozen=True)
class Verdict:
    """Combined result of all checks of one chunk."""

    status: str | None  # None (no checks), pass, warn, fail
    details: str = ""


def run_checks(checks: Sequence[ChunkCheck], view: str, interval: Interval, data: pa.Table) -> Verdict:
    applicable = [c for c in checks if c.views is None or view in c.views]
    if not applicable:
        return Verdict(None)
    failed: list[str] = []
    warned: list[str] = []
    for c in applicable:
        outcome = c.check(view, interval, data)
        if isinstance(outcome, bool):
            outcome = ValidationOutcome(outcome)
        if not outcome.passed:
            line = f"{c.label}: {outcome.details or 'failed'}"
            (failed if c.mode == "strict" else warned).append(line)
    if failed:
        return Verdict("fail", "; ".join(failed + warned))
    if warned:
        return Verdict("warn", "; ".join(warned))
    return Verdict("pass")


def expectation_checks(store, origin: str = "backfill") -> tuple[ChunkCheck, ...]:
    """The repo's Great Expectations gates as chunk checks: one per view whose suite sets
    ``meta.gate`` (``strict`` rejects the chunk, ``warn`` commits it and records the failure).
    ``origin`` labels the gate's results and metrics: the run kind (``backfill`` or ``materialize``)."""
    from fs_platform.governance import expectations

    checks = []
    for fv in store.list_feature_views():
        suite = expectations.load_suite(store.repo_path, fv.name)
        if suite is None or suite.gate is None:
            continue
        checks.append(
            ChunkCheck(
                _gx_check(store, suite.gate, origin), mode=suite.gate, views=(fv.name,), name="expectations"
            )
        )
    return tuple(checks)


def _gx_check(store, mode: str, origin: str) -> Check:
    def check(view: str, interval: Interval, data: pa.Table) -> ValidationOutcome:
        from fs_platform.governance.validate import gate

        if data.num_rows == 0:  # a chunk with no events (e.g. a partial first day): nothing to judge
            return ValidationOutcome(passed=True, details="no rows")
        result = gate(store, view, data, mode=mode, origin=origin, window=(interval.start, interval.end))
        return ValidationOutcome(passed=result.outcome == "passed", details=result.summary())

    return check
