"""Offline–online parity checks: does what the online store serves match what training sees?

``check(store, ...)`` returns a ``ParityReport`` (see ``fs_platform.parity.check``); ``replay(...)``
compares a stream transformation with its batch definition over a window of events (see
``fs_platform.parity.replay``); ``skew(...)`` compares what ``fs serve`` logged as served with the
offline point-in-time values at the served times (see ``fs_platform.parity.skew``).
"""

from fs_platform.parity.check import check
from fs_platform.parity.classify import Outcome
from fs_platform.parity.compare import Tolerance, Tolerances
from fs_platform.parity.report import ParityReport, write_prometheus

__all__ = ["Outcome", "ParityReport", "Tolerance", "Tolerances", "check", "write_prometheus"]
