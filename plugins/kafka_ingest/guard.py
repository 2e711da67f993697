"""``WriteGuard``: retries, a deadline and a circuit breaker around each write target's writes.

A write runs (on its writer thread) with retries of transient errors until its attempts or its
target's deadline run out (``attempt``); the loop then applies what it came to (``settle``): one
failure or a success for the target's breaker (``resilience.CircuitBreaker``), and the counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from fs_platform.errors import TransientError
from fs_platform.observability import span
from fs_platform.plugins.kafka_ingest.config import RetrySettings
from fs_platform.plugins.kafka_ingest.recorder import Recorder
from fs_platform.plugins.kafka_ingest.resilience import BreakerState, CircuitBreaker, with_retries

log = logging.getLogger(__name__)
TARGETS = ("online", "offline")


@dataclass(frozen=True)
class Outcome:
    """What one write (with its retries) came to; built on whichever thread ran it."""

    result: object
    error: TransientError | None
    retries: int
    seconds: float


class WriteGuard:
    def __init__(self, retry: RetrySettings, recorder: Recorder, on_change: Callable | None = None):
        """``on_change``: called on every breaker transition (``BreakerLog.record``)."""
        self._retry = retry
        self._recorder = recorder
        self.breakers = {
            t: CircuitBreaker(t, retry.breaker_failures, retry.breaker_reset_ms / 1000, on_change=on_change)
            for t in TARGETS
        }
        self.deadline_s = {
            "online": retry.online_deadline_ms / 1000,
            "offline": retry.offline_deadline_ms / 1000,
        }

    def allow(self, target: str) -> bool:
        return self.breakers[target].allow()

    def any_open(self) -> bool:
        return any(b.state is BreakerState.OPEN for b in self.breakers.values())

    def all_closed(self) -> bool:
        return all(b.state is BreakerState.CLOSED for b in self.breakers.values())

    def states(self) -> dict[str, str]:
        return {k: b.state.name.lower() for k, b in self.breakers.items()}

    def attempts(self, target: str) -> int:
        """A half-open breaker lets one probe write through, without retries."""
        breaker = self.breakers[target]
        return 1 if breaker.state is BreakerState.HALF_OPEN else self._retry.attempts

    def attempt(self, target: str, fn, attempts: int, traces: list = ()) -> Outcome:
        """Run ``fn`` with retries on transient errors. Any thread: touches no ingestor state.
        ``traces``: the consume spans of the rows written (the first is the write span's parent)."""
        r = self._retry
        retries = 0

        def retried(e):
            nonlocal retries
            retries += 1
            self._recorder.retrying(target)
            log.info("retrying %s write after %s", target, type(e).__name__)

        start = time.perf_counter()
        try:
            with span(f"fs.ingest.write_{target}", parent=traces[0] if traces else None, links=traces[1:]):
                result = with_retries(
                    fn,
                    attempts=attempts,
                    base_s=r.backoff_base_ms / 1000,
                    cap_s=r.backoff_max_ms / 1000,
                    on_retry=retried,
                    deadline=time.monotonic() + self.deadline_s[target],
                )
        except TransientError as e:
            return Outcome(None, e, retries, time.perf_counter() - start)
        return Outcome(result, None, retries, time.perf_counter() - start)

    def settle(self, target: str, outcome: Outcome, missed: int = 0):
        """Apply a write's outcome to the breaker and stats (loop thread); its result, None if it failed.
        ``missed``: deadlines the write ran past, already counted as failures."""
        breaker = self.breakers[target]
        if outcome.error is not None:
            self._recorder.settled(target, outcome.retries, None)
            if not missed:
                self.failed(target)
            log.warning("%s write failed: %s", target, outcome.error.message)
            return None
        breaker.success()
        self._recorder.breaker(target, breaker)
        self._recorder.settled(target, outcome.retries, outcome.seconds)
        return outcome.result

    def failed(self, target: str) -> None:
        """One failed write of ``target`` (after its retries, or a deadline it ran past)."""
        breaker = self.breakers[target]
        before = breaker.opened
        breaker.failure()
        self._recorder.breaker(target, breaker, opened_before=before)
