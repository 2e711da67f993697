"""Options every command declares the same way (``--json``, ``--views``, time ranges), and argument
values every command parses the same way: times, windows, durations.

A bad value is an ``InvalidArgument`` naming the option and the accepted forms; ``fs_platform.cli.main``
prints it on one line and exits 2 (``cli.exit_codes.USAGE``), whichever command it came from (no usage
box, no traceback).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

import typer
from typer.core import TyperCommand

from fs_platform.errors import InvalidArgument
from fs_platform.metadata import parse_duration
from fs_platform.timeutil import TIME_FORMS, parse_time

_RELATIVE_ARG = re.compile(r"^-\d+[smhdw]$")

TIME_HELP = "2026-11-01, ISO 8601, now, -2d; UTC if no offset"
START_HELP = f"Start of the range, inclusive ({TIME_HELP})."
END_HELP = "End of the range, exclusive (same formats as the start)."

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Machine-readable JSON on stdout (same as `fs --json`).")
]
ViewsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--views", "--view", help="Feature views to include (repeat the option); default: all online views."
    ),
]
StartArg = Annotated[str, typer.Argument(help=START_HELP)]
EndArg = Annotated[str, typer.Argument(help=END_HELP)]


def time_option(value: str | None, name: str) -> datetime | None:
    """``2026-11-01``, ISO 8601, ``now``, ``-2d`` as UTC (None stays None)."""
    return None if value is None else parse_time(value, what=name)


def window_option(text: str, name: str) -> tuple[datetime, datetime]:
    """A ``START..END`` window (each end as :func:`time_option`)."""
    start, sep, end = text.partition("..")
    if not sep or not start or not end:
        raise InvalidArgument(
            f"{name}: not a window: {text!r} (use START..END, e.g. 2026-11-01..2026-11-08 "
            f"or -14d..-7d; each end {TIME_FORMS})"
        )
    return time_option(start, name), time_option(end, name)


def duration_option(value: str | None, name: str, *, positive: bool = False) -> timedelta | None:
    """``15m``, ``6h``, ``7d`` (None stays None); ``positive`` refuses ``0h``."""
    return None if value is None else parse_duration(value, name, positive=positive)


class RelativeTimeArgs(TyperCommand):
    """A command with time arguments: ``fs materialize -2d now`` needs no ``--``.

    Click reads ``-2d`` as an option; a word that is a relative time (and no option of ours) is
    rewritten to the equivalent ``now-2d`` before parsing.
    """

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        args = [f"now{a}" if _RELATIVE_ARG.match(a) else a for a in args]
        return super().parse_args(ctx, args)
