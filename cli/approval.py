"""Who approves at the terminal: ``--approved-by``, else a yes/no asked of the user at the terminal
(``fs ops apply|rollback``, ``fs promote``)."""

from __future__ import annotations

import getpass
import sys

import typer


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def interactive() -> bool:
    """Whether a person is at the terminal to answer a confirmation."""
    return sys.stdin.isatty()


def approver(out, approved_by: str | None, yes: bool, what: str) -> str | None:
    """``--approved-by``, else an interactive confirmation at the terminal (None: not approved)."""
    if approved_by:
        return approved_by
    if yes or not interactive():
        return None
    return user() if typer.confirm(f"Approve {what} as {user()}?", default=False) else None
