"""Batch definitions: how a view's offline rows are recomputed for a backfill.

A feature repo declares them in ``backfills.py`` (listed in ``.feastignore`` so Feast's parser
skips it). Two kinds:

    from fs_platform.backfill.definitions import python_definition, sql_definition

    @python_definition("customer_daily_spend", inputs={"payments": "data/payments"}, lookback="24h")
    def customer_daily_spend(ctx):               # ctx.frames["payments"]: pandas, [start - 24h, end)
        return daily_spend(ctx.frames["payments"])

    merchant_risk = sql_definition("merchant_risk_daily", inputs={"payments": "data/payments"},
                                   lookback="30d", query="SELECT ... FROM payments ...")

Aggregation views need no definition: they have no offline rows to recompute (docs/aggregations.md).

Each input is a Delta table (path relative to the repo, or a URI) read for ``[start - lookback, end)``
of its ``event_timestamp``; SQL runs on the platform's Spark (each input is a temp view), Python
gets pandas frames. The result may contain rows outside the chunk (window warm-up): the runner
keeps only rows whose event time is in ``[start, end)``.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fs_platform.errors import RepoError
from fs_platform.metadata import parse_duration
from fs_platform.plugins.delta.tables import resolve_path

DEFINITIONS_FILE = "backfills.py"


@dataclass(frozen=True)
class BatchContext:
    """What a Python definition receives for one compute pass: one chunk, or several adjacent chunks
    recomputed together (``backfill.compute_span``); ``[start, end)`` covers all of them."""

    view: str
    start: datetime
    end: datetime
    frames: dict[str, Any]
    """Input name -> pandas DataFrame of the input's rows in ``[start - lookback, end)``."""


@dataclass(frozen=True)
class BatchDefinition:
    view: str
    inputs: dict[str, str]
    lookback: timedelta = timedelta(0)
    query: str | None = None
    function: Callable[[BatchContext], Any] | None = None
    input_timestamp: str = "event_timestamp"
    """Event-time column of every input (used to cut the read window)."""
    base: Path | None = field(default=None, compare=False)
    """Folder relative input paths resolve against (set by the loader to the repo folder)."""

    @property
    def describe(self) -> str:
        return "sql" if self.query else f"python:{getattr(self.function, '__name__', 'function')}"

    def location(self, name: str) -> str:
        return resolve_path(self.inputs[name], self.base)


def _lookback(value: str | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(value)


def python_definition(
    view: str,
    *,
    inputs: dict[str, str],
    lookback: str | timedelta = "0s",
    input_timestamp: str = "event_timestamp",
) -> Callable[[Callable[[BatchContext], Any]], BatchDefinition]:
    """Decorator: ``fn(ctx) -> pandas.DataFrame | pyarrow.Table`` recomputes ``view``."""

    def wrap(fn: Callable[[BatchContext], Any]) -> BatchDefinition:
        return BatchDefinition(
            view, dict(inputs), _lookback(lookback), function=fn, input_timestamp=input_timestamp
        )

    return wrap


def sql_definition(
    view: str,
    *,
    inputs: dict[str, str],
    query: str,
    lookback: str | timedelta = "0s",
    input_timestamp: str = "event_timestamp",
) -> BatchDefinition:
    """A Spark SQL query over the inputs (registered as temp views under their names)."""
    return BatchDefinition(
        view, dict(inputs), _lookback(lookback), query=query, input_timestamp=input_timestamp
    )


@dataclass(frozen=True)
class RepoBackfills:
    """What ``backfills.py`` declares: batch definitions per view, and chunk validation checks."""

    definitions: dict[str, BatchDefinition]
    checks: tuple


def load_repo(repo_path: Path) -> RepoBackfills:
    """Module-level ``BatchDefinition`` and ``ChunkCheck`` objects of ``<repo>/backfills.py``."""
    from fs_platform.backfill.validation import ChunkCheck

    path = Path(repo_path) / DEFINITIONS_FILE
    if not path.is_file():
        return RepoBackfills({}, ())
    sys.path.insert(0, str(repo_path))
    try:
        namespace = runpy.run_path(str(path), run_name="fs_backfills")
    except Exception as e:  # a user's Python file: anything can go wrong in it
        raise RepoError(
            f"could not load batch definitions from {path}: {type(e).__name__}: {e}",
            hint="fix the file, then run `fs backfill VIEW --dry-run`",
        ) from e
    finally:
        sys.path.remove(str(repo_path))
    found: dict[str, BatchDefinition] = {}
    for value in namespace.values():
        if isinstance(value, BatchDefinition):
            if value.view in found:
                raise RepoError(f"{path}: two batch definitions for feature view {value.view!r}")
            found[value.view] = BatchDefinition(**{**value.__dict__, "base": Path(repo_path)})
    checks = tuple(v for v in namespace.values() if isinstance(v, ChunkCheck))
    return RepoBackfills(found, checks)
