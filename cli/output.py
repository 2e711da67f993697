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


TABLE_WIDTH = 100  # human output fits a 100-column terminal or CI log; --wide lifts it


class Output:
    def __init__(self, as_json: bool = False, wide: bool = False):
        self.as_json = as_json
        # Rich wraps table cells to the console width: at most 100 columns (a narrower terminal keeps
        # its own width); --wide gives long rows their own line each, for copying ids and times.
        tty_width = Console().width if sys.stdout.isatty() else TABLE_WIDTH
        width = 250 if wide else min(tty_width, TABLE_WIDTH)
        self.console = Console(highlight=False, width=width)
        self.err = Console(stderr=True, highlight=False)

    def json(self, payload: Any) -> None:
        sys.stdout.write(json.dumps(payload, default=_default, indent=2, sort_keys=False) + "\n")

    def text(self, message: str) -> None:
        if not self.as_json:
            self.console.print(message, soft_wrap=True)  # a sentence is not cut: the terminal wraps it

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.as_json:
            return
        t = Table(title=title, title_justify="left")
        for i, c in enumerate(columns):
            t.add_column(
                c, no_wrap=i == 0, overflow="fold"
            )  # the name stays whole; other cells wrap, never cut
        for r in rows:
            t.add_row(*["" if v is None else str(v) for v in r])
        self.console.print(t)

    def progress(self) -> Progress:
        """A progress bar on stderr while the work runs; it leaves no line behind (the command prints
        its result, or the error, instead) and is off with --json or when stderr is not a terminal."""
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.err,
            disable=self.as_json or not self.err.is_terminal,
            transient=True,
        )
