# Benchmark baseline only: feature_repo/stream_transforms.py as of commit 6f9e42e^ (deleted there when
# aggregation views replaced it), unchanged; the current ingestor still runs it (transform hooks, lookback
# warm-up).
"""Stream transformations used by ingest.yaml (not Feast definitions: listed in .feastignore).

``CustomerTxnAggregates`` turns raw payment events into ``customer_txn_aggregates`` rows: rolling
counts and sums per customer over 10 minutes, 1 hour and 24 hours as of each payment, the same
numbers ``fs_platform.datagen.customer_aggregates`` computes in batch (rounded the same way, with numpy's
rounding). Windows are ``(t - w, t]``.

Two entry points over one state: ``__call__(record) -> row`` (the per-record hook contract, used by
parity replays) and ``batch(columns)``, the ingestor's fast path for a whole poll batch (see
``plugins/kafka_ingest/transform.py``). Both give identical rows for the same sequence of events.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta

import numpy as np

_LABELS = ("10m", "1h", "24h")
_SPAN_10M, _SPAN_1H, _DAY_US = 600_000_000, 3_600_000_000, 86_400_000_000
_SWEEP_EVERY = 10_000  # events between sweeps of idle customers
_COMPACT_AT = 64  # drop expired events from a customer's lists once this many are dead
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class _Customer:
    """One customer's retained payments, sorted by time (integer microseconds and cents), with a
    head index and running cents per window: events ``[head_k:]`` are those inside window k."""

    __slots__ = ("latest", "ts", "cents", "h10", "h1h", "h24", "s10", "s1h", "s24")

    def __init__(self, ts: int):
        self.latest = ts
        self.ts: list[int] = []
        self.cents: list[int] = []
        self.h10 = self.h1h = self.h24 = 0
        self.s10 = self.s1h = self.s24 = 0


class CustomerTxnAggregates:
    """One instance per partition; state is bounded by the customers active in the last 24 hours."""

    lookback = timedelta(hours=24)

    def __init__(self):
        self._state: dict[int, _Customer] = {}
        self._latest = 0
        self._seen = 0

    # -- per record (the hook contract) --------------------------------------------------------------
    def __call__(self, payment: dict) -> dict:
        ts = payment["event_timestamp"]
        out = self._step(payment["customer_id"], (ts - _EPOCH) // _US, round(payment["amount"] * 100))
        if out is None:
            raise ValueError("event is more than 24 hours older than the customer's latest")
        n10, c10, n1h, c1h, n24, c24 = out
        a24 = c24 / 100
        return {
            "customer_id": payment["customer_id"],
            "event_timestamp": ts,
            "txn_count_10m": n10,
            "txn_count_1h": n1h,
            "txn_count_24h": n24,
            "txn_amount_10m": c10 / 100,
            "txn_amount_1h": c1h / 100,
            "txn_amount_24h": a24,
            # numpy's rounding (rint(x * 1e4) / 1e4), as the batch definition's .round(4)
            "avg_amount_24h": round(a24 / n24 * 10_000) / 10_000,
        }

    # -- per poll batch (the ingestor's fast path) --------------------------------------------------
    def batch(self, columns: dict) -> tuple[dict, list[int]]:
        """``columns``: equal-length ``customer_id``, ``amount`` (lists) and ``event_timestamp``
        (int64 microseconds since the epoch, UTC). Returns the output columns (one row per accepted
        input, in order; ``event_timestamp`` as int64 microseconds) and the indices of rejected inputs."""
        customers = columns["customer_id"]
        ts_col = columns["event_timestamp"]
        ts_list = ts_col.tolist() if isinstance(ts_col, np.ndarray) else list(ts_col)
        cents_list = np.rint(np.asarray(columns["amount"], dtype=np.float64) * 100).astype(np.int64).tolist()
        step = self._step
        out_rows, rejected, keep = [], [], []
        append, keep_append = out_rows.append, keep.append
        for i, (customer, ts, cents) in enumerate(zip(customers, ts_list, cents_list, strict=True)):
            r = step(customer, ts, cents)
            if r is None:
                rejected.append(i)
            else:
                append(r)
                keep_append(i)
        if rejected:
            customers = [customers[i] for i in keep]
            ts_list = [ts_list[i] for i in keep]
        agg = np.array(out_rows, dtype=np.int64).reshape(-1, 6)
        a24 = agg[:, 5] / 100
        return {
            "customer_id": np.asarray(customers, dtype=np.int64),
            "event_timestamp": np.asarray(ts_list, dtype=np.int64),
            "txn_count_10m": agg[:, 0],
            "txn_count_1h": agg[:, 2],
            "txn_count_24h": agg[:, 4],
            "txn_amount_10m": agg[:, 1] / 100,
            "txn_amount_1h": agg[:, 3] / 100,
            "txn_amount_24h": a24,
            "avg_amount_24h": np.round(a24 / agg[:, 4], 4),
        }, rejected

    # -- the state machine ------------------------------------------------------------------------------
    def _step(self, customer: int, ts: int, cents: int) -> tuple | None:
        """Add one payment; its (count, cents) per window as of its own time, or None when it is more
        than 24 hours older than the customer's latest payment (it can no longer be aggregated)."""
        c = self._state.get(customer)
        if c is None:
            c = self._state[customer] = _Customer(ts)
        tl, cl = c.ts, c.cents
        if ts >= c.latest:
            c.latest = ts
            tl.append(ts)
            cl.append(cents)
            h, s, cut = c.h10, c.s10 + cents, ts - _SPAN_10M
            while tl[h] <= cut:
                s -= cl[h]
                h += 1
            c.h10, c.s10, n10, s10 = h, s, len(tl) - h, s
            h, s, cut = c.h1h, c.s1h + cents, ts - _SPAN_1H
            while tl[h] <= cut:
                s -= cl[h]
                h += 1
            c.h1h, c.s1h, n1h, s1h = h, s, len(tl) - h, s
            h, s, cut = c.h24, c.s24 + cents, ts - _DAY_US
            while tl[h] <= cut:
                s -= cl[h]
                h += 1
            c.h24, c.s24 = h, s
            out = (n10, s10, n1h, s1h, len(tl) - h, s)
            if h >= _COMPACT_AT:
                del tl[:h], cl[:h]
                c.h10 -= h
                c.h1h -= h
                c.h24 = 0
        else:  # a late event: insert in order; windows are still those of the customer's latest time
            latest = c.latest
            if ts <= latest - _DAY_US:
                self._bookkeep(ts)
                return None
            p = bisect_right(tl, ts, c.h24)
            tl.insert(p, ts)
            cl.insert(p, cents)
            c.s24 += cents
            if ts > latest - _SPAN_1H:
                c.s1h += cents
            else:
                c.h1h += 1
            if ts > latest - _SPAN_10M:
                c.s10 += cents
            else:
                c.h10 += 1
            # As of its own time, from the retained (24h) events: (ts - span, ts].
            out = []
            for span in (_SPAN_10M, _SPAN_1H, _DAY_US):
                lo = bisect_right(tl, ts - span, c.h24, p)
                out += (p + 1 - lo, sum(cl[lo : p + 1]))
            out = tuple(out)
        self._bookkeep(ts)
        return out

    def _bookkeep(self, ts_us: int) -> None:
        if ts_us > self._latest:
            self._latest = ts_us
        self._seen += 1
        if self._seen % _SWEEP_EVERY == 0:
            cutoff = self._latest - _DAY_US
            idle = [k for k, c in self._state.items() if c.latest <= cutoff]
            for k in idle:
                del self._state[k]
