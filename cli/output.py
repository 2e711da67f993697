"""One place that renders results: rich tables for humans, JSON with ``--json``."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime, timedelta
from typing import Any

import typer
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


def parse_time_option(value: str | None, param_hint: str | None = None) -> datetime | None:
    """A time option (``2026-11-01``, ISO 8601, ``now``, ``-2d``) as UTC; a bad value is a usage
    error (``typer.BadParameter``: exit 2 with the option named), not a crash."""
    from fs.timeutil import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=param_hint) from None


def parse_window_option(text: str, param_hint: str | None = None) -> tuple[datetime, datetime]:
    """A ``START..END`` window option (each end as :func:`parse_time_option`)."""
    start, sep, end = text.partition("..")
    if not sep or not start or not end:
        raise typer.BadParameter(
            f"{text!r}: use START..END, e.g. 2026-11-01..2026-11-08 or -14d..-7d", param_hint=param_hint
        )
    return parse_time_option(start, param_hint), parse_time_option(end, param_hint)


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
