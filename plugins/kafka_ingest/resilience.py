"""Retries with exponential backoff and full jitter, and a circuit breaker per write target.

Only ``TransientError``s are retried (the type decides, never the message). A write that still
fails after its attempts counts as one failure; ``failures`` consecutive failures open the
breaker. While open the ingestor stops fetching (it stays in the group) and reports degraded;
after ``reset_s`` one probe write is let through (half-open): success closes, failure re-opens.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import Enum
from typing import TypeVar

from fs_platform.errors import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")


class BreakerState(Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failures: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str, str, int], None] | None = None,
    ):
        """``on_change(name, from_state, to_state, consecutive_failures)`` on every transition (e.g.
        ``BreakerLog.record``: kept for ``fs doctor triage``); it must not block."""
        self.name = name
        self._on_change = on_change
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at = 0.0
        self.state = BreakerState.CLOSED
        self.opened = 0  # times it opened, for stats

    def allow(self) -> bool:
        """Whether a write may be attempted now (moves OPEN -> HALF_OPEN when the wait is over)."""
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self._reset_s:
            self._move(BreakerState.HALF_OPEN)
            log.info("breaker %s half-open: probing", self.name)
        return self.state is not BreakerState.OPEN

    def success(self) -> None:
        if self.state is not BreakerState.CLOSED:
            log.warning("breaker %s closed: target recovered", self.name)
            self._move(BreakerState.CLOSED)
        self._consecutive = 0

    def failure(self) -> None:
        self._consecutive += 1
        if self.state is BreakerState.HALF_OPEN or self._consecutive >= self._threshold:
            if self.state is not BreakerState.OPEN:
                self.opened += 1
                log.warning(
                    "breaker %s open after %d consecutive failed writes", self.name, self._consecutive
                )
                self._move(BreakerState.OPEN)
            self._opened_at = self._clock()

    def _move(self, to: BreakerState) -> None:
        old, self.state = self.state, to
        if self._on_change is not None:
            self._on_change(self.name, old.name.lower(), to.name.lower(), self._consecutive)


def backoff_delays(attempts: int, base_s: float, cap_s: float):
    """Sleep before attempts 2..n: full jitter over an exponentially growing ceiling."""
    for i in range(attempts - 1):
        yield random.uniform(0, min(cap_s, base_s * 2**i))


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    base_s: float,
    cap_s: float,
    on_retry: Callable[[BaseException], None] = lambda e: None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn``; retry transient errors up to ``attempts`` times in all, then re-raise. No retry
    starts after ``deadline`` (a ``clock`` time): a hung target must not hold the caller for every
    attempt's timeouts in turn."""
    delays = backoff_delays(attempts, base_s, cap_s)
    while True:
        try:
            return fn()
        except TransientError as e:
            delay = next(delays, None)
            if delay is None or (deadline is not None and clock() + delay >= deadline):
                raise
            on_retry(e)
            sleep(delay)
