"""The ``fs`` command's exit codes, defined once (documented in docs/configuration.md, "Exit codes").

Every command and ``fs_platform.cli.main`` use these names; scripts and CI may rely on the numbers.
"""

from __future__ import annotations

OK = 0
"""Success."""

ERROR = 1
"""An error: one line on stderr (``FS_DEBUG=1`` shows the traceback), e.g. a failed chunk."""

USAGE = 2
"""A usage error or a bad argument value (a time, a duration, a range), whichever command parsed it."""

BREACH = 3
"""The check ran and found a breach: ``fs parity`` above tolerance, ``fs validate`` failed,
``fs monitor freshness`` / ``drift`` over their limits, ``fs parity replay`` differences, ``fs parity skew``
served values that differ from the offline ones."""

NO_DATA = 4
"""Nothing was checked: no sampled entity had a row on either side of some view (``fs parity check``), or
no served rows were logged in the window (``fs parity skew``)."""

INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT)."""
