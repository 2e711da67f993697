"""A pure-Python streaming implementation of ``customer_txn_aggregates``, shaped like an ingest hook.

Used by replay parity until the repo declares its own transformation in ``ingest.yaml``: it has the
Kafka ingestor's hook contract (a class, one instance per partition, called once per record in
event-time order, returning one row), so pointing replay at the real transformation changes nothing
else. Windows are ``(t - w, t]`` like pandas' time-based rolling windows used by the batch definition.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta

import numpy as np

WINDOWS = (("10m", timedelta(minutes=10)), ("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)))


class CustomerTxnAggregates:
    lookback = timedelta(hours=24)  # history an ingestor replays after a restart

    def __init__(self):
        self._recent: dict[int, deque[tuple[datetime, float]]] = {}

    def __call__(self, record: dict) -> dict:
        ts: datetime = record["event_timestamp"]
        customer = int(record["customer_id"])
        recent = self._recent.setdefault(customer, deque())
        recent.append((ts, float(record["amount"])))
        while recent and recent[0][0] <= ts - self.lookback:
            recent.popleft()
        row: dict = {"customer_id": customer}
        for label, width in WINDOWS:
            amounts = [a for t, a in recent if t > ts - width]
            row[f"txn_count_{label}"] = len(amounts)
            row[f"txn_amount_{label}"] = _round(math.fsum(amounts), 2)
        row["avg_amount_24h"] = _round(row["txn_amount_24h"] / row["txn_count_24h"], 4)
        row["event_timestamp"] = ts
        return row


def _round(x: float, digits: int) -> float:
    # numpy's rounding, as the batch definition uses: Python's round() differs on ties (replay caught it).
    return float(np.round(x, digits))
