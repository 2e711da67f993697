"""Expectation suites per feature view, kept in the feature repo, run with Great Expectations.

A suite is ``<repo>/expectations/<view>.json`` in GX's own suite format::

    {"name": "merchant_risk_daily",
     "expectations": [{"type": "expect_column_values_to_be_between",
                       "kwargs": {"column": "approval_rate_1d", "min_value": 0, "max_value": 1}}],
     "meta": {"drift": {"psi": 0.2, "ks": 0.1, "features": {"txn_volume_1d": {"psi": 0.3}}}}}

``meta.drift`` holds the view's drift thresholds (see ``drift.py``), so one reviewed file per view
carries its whole data contract. Column *types* are not GX expectations: they are checked against
the view's Feast schema on the Arrow data (``validate.py``), because GX's pandas dtype checks
misreport nullable and timezone-aware types.

GX costs ~6 s to import, so it is imported on first use and one ephemeral context is shared by
the process (GX is not thread-safe: runs are serialised by a lock).
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fs_platform.errors import ConfigError

SUITES_DIR = "expectations"
_lock = threading.Lock()
_datasource = None
_batch_defs: dict[str, object] = {}


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    expectations: list[dict]
    meta: dict = field(default_factory=dict)

    @property
    def drift(self) -> dict:
        return dict(self.meta.get("drift") or {})

    @property
    def gate(self) -> str | None:
        """How writers gate on this suite: ``strict``, ``warn``, or None (validate on demand only)."""
        mode = self.meta.get("gate")
        if mode not in (None, "strict", "warn"):
            raise ConfigError(f"suite {self.path}: meta.gate must be 'strict' or 'warn', got {mode!r}")
        return mode


@dataclass(frozen=True)
class Outcome:
    """One expectation's result, before masking (``validate.py`` turns it into a ``CheckResult``)."""

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    samples: list
    observed: object
    error: str | None
    columns: tuple[str, ...] = ()  # every column the expectation reads (column, column_A/B, column_list)


def suite_path(repo_path: str | Path, view: str) -> Path:
    return Path(repo_path) / SUITES_DIR / f"{view}.json"


def load_suite(repo_path: str | Path, view: str) -> Suite | None:
    """The view's suite, or None if the repo has none for it."""
    path = suite_path(repo_path, view)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        expectations = list(data["expectations"])
        for e in expectations:
            if not isinstance(e.get("type"), str) or not isinstance(e.get("kwargs", {}), dict):
                raise ValueError("each expectation needs a 'type' string and a 'kwargs' object")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"malformed expectation suite {path}: {e}", hint="fix the JSON, then rerun"
        ) from None
    return Suite(
        name=data.get("name", view), path=path, expectations=expectations, meta=dict(data.get("meta") or {})
    )


def _pandas_datasource():
    global _datasource
    if _datasource is None:
        with warnings.catch_warnings():  # GX's import raises stdlib deprecation warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                progress_bars=ProgressBarsConfig(globally=False),
                analytics_enabled=False,
            ),
        )
        _datasource = context.data_sources.add_pandas("fs")
    return _datasource


def _batch_definition(view: str):
    if view not in _batch_defs:
        asset = _pandas_datasource().add_dataframe_asset(view)
        _batch_defs[view] = asset.add_batch_definition_whole_dataframe("all")
    return _batch_defs[view]


def run_suite(suite: Suite, view: str, frame: pd.DataFrame, sample_count: int = 5) -> list[Outcome]:
    """Validate ``frame`` against ``suite``; one ``Outcome`` per expectation."""
    with _lock:
        definition = _batch_definition(view)
        import great_expectations as gx  # already loaded by _batch_definition

        gx_suite = gx.ExpectationSuite(
            name=suite.name,
            expectations=[
                {"type": e["type"], "kwargs": e.get("kwargs", {}), "meta": e.get("meta", {})}
                for e in suite.expectations
            ],
        )
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        # BASIC has all that is read below (counts, a few unexpected values, observed values, details);
        # SUMMARY only adds value counts and row indexes of unexpected values, at ~3x the cost per call.
        result = batch.validate(
            gx_suite, result_format={"result_format": "BASIC", "partial_unexpected_count": sample_count}
        )
    out = []
    for r in result.results:
        res, exc, kwargs = r.result or {}, r.exception_info or {}, r.expectation_config.kwargs
        error = exc.get("exception_message") if exc.get("raised_exception") else None
        out.append(
            Outcome(
                expectation=r.expectation_config.type,
                column=kwargs.get("column") or kwargs.get("column_A"),
                success=bool(r.success),
                unexpected_count=res.get("unexpected_count"),
                unexpected_percent=res.get("unexpected_percent"),
                samples=list(res.get("partial_unexpected_list") or []),
                observed=res.get("details", {}).get("mismatched") or res.get("observed_value"),
                error=error.splitlines()[0] if error else None,
                columns=referenced_columns(kwargs),
            )
        )
    return out


def referenced_columns(kwargs) -> tuple[str, ...]:
    """The data columns an expectation's kwargs name: ``column``, ``column_A``/``column_B``,
    ``column_list`` (multi-column and compound expectations)."""
    names = [kwargs.get(k) for k in ("column", "column_A", "column_B")]
    names += list(kwargs.get("column_list") or [])
    return tuple(dict.fromkeys(str(n) for n in names if n))
