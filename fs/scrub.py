"""Error text without values: the one rule for what logs, ledgers and user errors may quote from an
exception the platform did not write (a Spark, driver or library error).

Such messages often quote the data they failed on (an entity key, a feature value, an e-mail).
:func:`scrub` keeps the first line only, replaces quoted literals (single or double quotes) and
value-like tokens (anything with a digit or one of ``@ = < > [ ] { }``) by ``…``, removes the
given secrets, and cuts the result to 200 characters. Platform errors (``FsError``) are written to
name places, not values, and need no scrubbing. The full exception stays in DEBUG tracebacks.

    scrub("no row for 'alice@example.com' (id 4242)")   # 'no row for … (id …'
    summary(KeyError("4242"))                           # 'KeyError: …'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LIMIT = 200
_QUOTED = re.compile(r"(['\"]).*?\1")
_VALUE_LIKE = re.compile(r"\S*[\d@=<>\[\]{}]\S*")


def scrub(text: str, *, secrets: Iterable[str | None] = (), limit: int = LIMIT) -> str:
    """``text``'s first non-empty line with secrets, quoted literals and value-like tokens replaced."""
    first = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    for secret in secrets:
        if secret:
            first = first.replace(secret, "…")
    return _VALUE_LIKE.sub("…", _QUOTED.sub("…", first)).strip()[:limit]


def summary(error: BaseException, *, secrets: Iterable[str | None] = ()) -> str:
    """``Type: scrubbed first line`` of an exception (only ``Type`` if nothing is left)."""
    scrubbed = scrub(str(error), secrets=secrets)
    return f"{type(error).__name__}: {scrubbed}" if scrubbed else type(error).__name__
