"""Stop requests by SIGTERM or SIGINT for a long-running command (``fs ingest run``).

An orchestrator may send SIGTERM while the process is still importing or starting up (Feast alone
takes seconds to import): from the moment ``catch()`` runs, such a signal is kept as a pending request
instead of killing the process, and the command stops cleanly as soon as it subscribes, having
consumed nothing. ``cli/__init__.py`` calls ``catch()`` first thing for ``fs ingest run``; the
ingestor subscribes its ``stop`` with ``on_request``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

_pending = threading.Event()  # a request that came while nobody was subscribed
_callbacks: list[Callable[[], None]] = []


def _on_signal(signum, frame) -> None:
    if not _callbacks:
        _pending.set()
    for callback in list(_callbacks):
        callback()


def catch() -> None:
    """Turn SIGTERM and SIGINT into a stop request (main thread only; idempotent)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)


def on_request(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on a stop request, at once if one is pending (which it consumes); returns the
    unsubscribe function."""
    _callbacks.append(callback)
    if _pending.is_set():
        _pending.clear()
        callback()
    return lambda: _callbacks.remove(callback)
