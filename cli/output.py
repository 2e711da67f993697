"""One place that renders results: rich tables for humans, JSON with ``--json``."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def _default(obj: Any):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


class Output:
    def __init__(self, as_json: bool = False):
        self.as_json = as_json
        # Piped output (CI logs, `| less`) gets wide lines instead of Rich's 80-column default.
        width = None if sys.stdout.isatty() else 160
        self.console = Console(highlight=False, width=width)
        self.err = Console(stderr=True, highlight=False)

    def json(self, payload: Any) -> None:
        sys.stdout.write(json.dumps(payload, default=_default, indent=2, sort_keys=False) + "\n")

    def text(self, message: str) -> None:
        if not self.as_json:
            self.console.print(message)

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.as_json:
            return
        t = Table(title=title, title_justify="left")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*["" if v is None else str(v) for v in r])
        self.console.print(t)

    def progress(self) -> Progress:
        """A progress bar on stderr (silent with --json or when stderr is not a terminal)."""
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.err,
            disable=self.as_json,
            transient=False,
        )
