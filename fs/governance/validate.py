"""Data-quality gate: a view's expectation suite (plus its Feast schema) run on a chunk of data.

The hook other areas call, per chunk (backfill, materialization) or per batch (ingest)::

    from fs_platform.governance.validate import gate
    result = gate(store, "merchant_risk_daily", table, mode="strict", origin="backfill")
    if not result.accepted:        # strict and failed: do not write (ingest: dead-letter it)
        ...
    result.raise_if_rejected()     # or: ValidationFailed with a one-line summary

``mode="warn"`` always accepts and records the failure. Every result is appended to the
repo's result log (``ResultLog``) and counted in ``fs_validation_runs_total``. Failing sample
values of PII-classified columns are masked before they reach the result, the log or a report.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
from feast.value_type import ValueType

from fs_platform.errors import ConfigError, ValidationFailed
from fs_platform.field_mapping import to_mapped_names
from fs_platform.governance import expectations, metrics, offline
from fs_platform.governance.pii import mask_if
from fs_platform.metadata import sensitive_features
from fs_platform.observability import span
from fs_platform.plugins.redis_store.codec import ARROW_OK
from fs_platform.timeutil import parse_time, utcnow
from fs_platform.views import feature_view

log = logging.getLogger(__name__)

Mode = Literal["strict", "warn"]
# Arrow types accepted per Feast type: the online codec's, plus timestamps (event times, not served).
_ARROW_OK = {**ARROW_OK, ValueType.UNIX_TIMESTAMP: (pa.types.is_timestamp,)}


@dataclass(frozen=True)
class CheckResult:
    check: str  # a GX expectation type, or "schema_type"
    column: str | None
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    samples: list = field(default_factory=list)  # failing values; masked for PII columns
    detail: str | None = None


@dataclass(frozen=True)
class ValidationResult:
    view: str
    mode: str
    origin: str  # cli | backfill | materialize | ingest | api
    run_id: str
    checked_at: datetime
    rows: int
    passed: bool
    suite: str | None  # path of the suite used; None if the view has none
    checks: list[CheckResult]
    window_start: datetime | None = None
    window_end: datetime | None = None

    @property
    def accepted(self) -> bool:
        """Whether the caller may write the data: passed, or failed in warn mode."""
        return self.passed or self.mode == "warn"

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else ("warned" if self.mode == "warn" else "rejected")

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> str:
        failed = ", ".join(f"{c.check}({c.column})" if c.column else c.check for c in self.failures[:5])
        more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
        return (
            f"{self.view}: {self.outcome} — {len(self.failures)}/{len(self.checks)} checks failed "
            f"on {self.rows} rows" + (f": {failed}{more}" if failed else "")
        )

    def raise_if_rejected(self) -> None:
        if not self.accepted:
            raise ValidationFailed(
                self.summary(), hint=f"see `fs validate {self.view}` or `fs validate --list`"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outcome"] = self.outcome
        return d

    @staticmethod
    def from_dict(d: dict) -> ValidationResult:
        d = {k: v for k, v in d.items() if k != "outcome"}
        for k in ("checked_at", "window_start", "window_end"):
            d[k] = parse_time(d[k]) if d.get(k) else None
        d["checks"] = [CheckResult(**c) for c in d["checks"]]
        return ValidationResult(**d)


# -- result log ---------------------------------------------------------------------------------
class ResultLog:
    """Append-only JSON-lines log of validation results under the repo's data dir
    (``$FS_QUALITY_DIR`` overrides). Appends take an exclusive lock so concurrent ingestors and
    backfills never interleave lines."""

    def __init__(self, repo_path: str | Path):
        base = os.environ.get("FS_QUALITY_DIR") or Path(repo_path) / "data" / "quality"
        self.path = Path(base) / "validation_results.jsonl"

    def append(self, result: ValidationResult) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(result.to_dict(), default=_json_default, separators=(",", ":")) + "\n"
        with open(self.path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def list(
        self, view: str | None = None, limit: int = 50, failed_only: bool = False
    ) -> list[ValidationResult]:
        """Newest first."""
        if not self.path.is_file():
            return []
        out = []
        for line in reversed(self.path.read_text().splitlines()):
            if not line.strip():
                continue
            d = json.loads(line)
            if (view and d["view"] != view) or (failed_only and d["passed"]):
                continue
            out.append(ValidationResult.from_dict(d))
            if len(out) >= limit:
                break
        return out


def _json_default(obj):
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


# -- checks -------------------------------------------------------------------------------------
def _schema_checks(view, table: pa.Table) -> list[CheckResult]:
    """Declared Feast types vs the data's Arrow types (missing columns are the suite's job)."""
    out = []
    for f in [*view.entity_columns, *view.features]:
        if f.name not in table.column_names:
            continue
        vt = f.dtype.to_value_type()
        actual = table.schema.field(f.name).type
        ok = _ARROW_OK.get(vt)
        if ok is not None and not any(p(actual) for p in ok):
            out.append(CheckResult("schema_type", f.name, False, detail=f"declared {vt.name}, got {actual}"))
    return out


def _sample(value, sensitive: bool):
    if isinstance(value, tuple):
        return [_sample(v, sensitive) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and value != value:
        value = None
    return mask_if(sensitive, value) if not isinstance(value, (datetime, pd.Timestamp)) else str(value)


def _to_arrow(data) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise ConfigError(f"validation needs a pandas DataFrame or a pyarrow Table, got {type(data).__name__}")


def run_checks(view, suite: expectations.Suite | None, data) -> list[CheckResult]:
    """Schema-type checks plus the suite's expectations, with PII samples masked."""
    table = _to_arrow(data)
    checks = _schema_checks(view, table)
    if suite is None:
        return checks
    frame = data if isinstance(data, pd.DataFrame) else table.to_pandas()
    sensitive = sensitive_features(view)
    for o in expectations.run_suite(suite, view.name, frame):
        # Samples of a multi-column expectation carry every referenced column's values.
        pii = any(c in sensitive for c in (*o.columns, o.column) if c)
        checks.append(
            CheckResult(
                check=o.expectation,
                column=o.column,
                success=o.success,
                unexpected_count=o.unexpected_count,
                unexpected_percent=o.unexpected_percent,
                samples=[_sample(s, pii) for s in o.samples],
                detail=_detail(o, frame, pii),
            )
        )
    return checks


def _detail(o: expectations.Outcome, frame: pd.DataFrame, pii: bool) -> str | None:
    if o.success:
        return None
    if o.column and o.column not in frame.columns:
        return f"column {o.column!r} is missing from the data"
    if o.error:
        return o.error
    if o.observed is None:
        return None
    return "observed value masked (PII)" if pii else json.dumps(o.observed, default=str)[:300]


def gate(
    store,
    view: str,
    data,
    mode: Mode = "strict",
    *,
    origin: str = "api",
    window: tuple[datetime, datetime] | None = None,
    record: bool = True,
) -> ValidationResult:
    """Validate one chunk/batch of ``view``'s data (pandas or Arrow) against its suite.

    ``store`` is the Feast ``FeatureStore`` (``Platform.store``). Returns a ``ValidationResult``;
    ``result.accepted`` says whether to write. Never raises for bad data (only for a bad suite or
    an unknown view); ``result.raise_if_rejected()`` turns a strict failure into ``ValidationFailed``.
    """
    if mode not in ("strict", "warn"):
        raise ConfigError(f"validation mode must be 'strict' or 'warn', got {mode!r}")
    fv = feature_view(store, view)
    if (
        fv.batch_source.field_mapping
    ):  # data in source column names (e.g. recomputed rows): suites use feature names
        data = to_mapped_names(_to_arrow(data), fv.batch_source)
    suite = expectations.load_suite(store.repo_path, view)
    with span(metrics.SPAN_VALIDATE, view=view, origin=origin, mode=mode):
        checks = run_checks(fv, suite, data)
    result = ValidationResult(
        view=view,
        mode=mode,
        origin=origin,
        run_id=uuid.uuid4().hex[:12],
        checked_at=utcnow(),
        rows=len(data),
        passed=all(c.success for c in checks),
        suite=str(suite.path) if suite else None,
        checks=checks,
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
    )
    metrics.VALIDATION_RUNS.labels(view, origin, result.outcome).inc()
    if result.failures:
        metrics.VALIDATION_FAILED_CHECKS.labels(view, origin).inc(len(result.failures))
        log.warning("validation %s", result.summary())
    if record:
        ResultLog(store.repo_path).append(result)
    return result


def validate_offline(
    store,
    view: str,
    start: datetime | None = None,
    end: datetime | None = None,
    mode: Mode = "strict",
) -> ValidationResult:
    """Run the view's suite on its offline rows with event time in ``[start, end)``."""
    feature_view(store, view)  # unknown view: say so before looking for its suite
    if expectations.load_suite(store.repo_path, view) is None:
        raise ConfigError(
            f"no expectation suite for view {view!r} ({expectations.suite_path(store.repo_path, view)})",
            hint="write one (see docs/governance.md), then rerun `fs validate`",
        )
    table = offline.read_window(store, view, start, end)
    return gate(store, view, table, mode, origin="cli", window=(start, end) if start or end else None)


def list_results(
    store, view: str | None = None, limit: int = 50, failed_only: bool = False
) -> Sequence[ValidationResult]:
    return ResultLog(store.repo_path).list(view, limit, failed_only)
