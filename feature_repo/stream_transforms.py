"""Stream transformations used by ingest.yaml (not Feast definitions: listed in .feastignore).

``CustomerTxnAggregates`` turns raw payment events into ``customer_txn_aggregates`` rows: rolling
counts and sums per customer over 10 minutes, 1 hour and 24 hours as of each payment, the same
numbers ``fs.datagen.customer_aggregates`` computes in batch. Windows are ``(t - w, t]``.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta

_WINDOWS = (("10m", 600_000_000), ("1h", 3_600_000_000), ("24h", 86_400_000_000))
_DAY_US = 86_400_000_000
_SWEEP_EVERY = 10_000  # events between sweeps of idle customers


class _Window:
    """Payments of one customer inside one window, with running count and sum (integer cents)."""

    __slots__ = ("span", "events", "cents")

    def __init__(self, span: int):
        self.span = span
        self.events: deque[tuple[int, int]] = deque()
        self.cents = 0

    def add(self, ts: int, cents: int, latest: int) -> None:
        if ts <= latest - self.span:
            return
        if not self.events or self.events[-1][0] <= ts:
            self.events.append((ts, cents))
        else:  # a late event: keep the deque ordered
            i = len(self.events)
            while i and self.events[i - 1][0] > ts:
                i -= 1
            self.events.insert(i, (ts, cents))
        self.cents += cents

    def evict(self, latest: int) -> None:
        cutoff = latest - self.span
        events = self.events
        while events and events[0][0] <= cutoff:
            self.cents -= events.popleft()[1]


class CustomerTxnAggregates:
    """One instance per partition; state is bounded by the customers active in the last 24 hours."""

    lookback = timedelta(hours=24)

    def __init__(self):
        self._state: dict[int, tuple[list, list[_Window]]] = {}  # customer -> ([latest_us], windows)
        self._latest = 0
        self._seen = 0

    def __call__(self, payment: dict) -> dict:
        customer = payment["customer_id"]
        ts = payment["event_timestamp"]
        ts_us = (ts.toordinal() * 86_400 + ts.hour * 3600 + ts.minute * 60 + ts.second) * 1_000_000 + ts.microsecond
        cents = round(payment["amount"] * 100)
        entry = self._state.get(customer)
        if entry is None:
            entry = self._state[customer] = ([ts_us], [_Window(span) for _, span in _WINDOWS])
        latest, windows = entry
        if ts_us >= latest[0]:
            latest[0] = ts_us
            for w in windows:
                w.add(ts_us, cents, ts_us)
                w.evict(ts_us)
            counts = [(len(w.events), w.cents) for w in windows]
        else:
            for w in windows:
                w.add(ts_us, cents, latest[0])
            counts = [_as_of(windows[-1], span, ts_us) for _, span in _WINDOWS]
        self._bookkeep(ts_us)
        row = {"customer_id": customer, "event_timestamp": ts}
        for (label, _), (n, c) in zip(_WINDOWS, counts, strict=True):
            row[f"txn_count_{label}"] = n
            row[f"txn_amount_{label}"] = round(c / 100, 2)
        n24, c24 = counts[-1]
        row["avg_amount_24h"] = round(c24 / 100 / n24, 4)
        return row

    def _bookkeep(self, ts_us: int) -> None:
        if ts_us > self._latest:
            self._latest = ts_us
        self._seen += 1
        if self._seen % _SWEEP_EVERY == 0:
            cutoff = self._latest - _DAY_US
            idle = [c for c, (latest, _) in self._state.items() if latest[0] <= cutoff]
            for c in idle:
                del self._state[c]


def _as_of(day: _Window, span: int, ts_us: int) -> tuple[int, int]:
    """Count and cents in ``(ts - span, ts]`` from the retained 24h events (late events only)."""
    n = cents = 0
    for t, c in day.events:
        if ts_us - span < t <= ts_us:
            n += 1
            cents += c
    return n, cents
