"""Offline–online parity checks: does what the online store serves match what training sees?

``check(store, ...)`` returns a ``ParityReport`` (see ``parity.check``); ``replay(...)`` compares a
stream transformation with its batch definition over a window of events (see ``parity.replay``).
"""

from parity.check import check
from parity.classify import Outcome
from parity.compare import Tolerance, Tolerances
from parity.report import ParityReport, write_prometheus

__all__ = ["Outcome", "ParityReport", "Tolerance", "Tolerances", "check", "write_prometheus"]
