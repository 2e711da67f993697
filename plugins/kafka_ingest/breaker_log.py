"""Breaker transitions of the ingestor, kept: an append-only Delta table beside the backfill ledger
(``<ledger dir>/ingest_breakers``, default ``data/_fs/ingest_breakers``), so ``fs doctor triage`` can put
"the online breaker opened at 14:02" on an incident's timeline after the fact (the live gauge
``fs_ingest_breaker_state`` only tells the present).

One row per transition: when, which breaker (``online`` / ``offline``), from and to (``closed``,
``open``, ``half_open``), the consecutive failures behind it, and the ingestor (host and pid). A
transition is queued by the breaker (never blocking the write path) and appended by a background
thread; an append that fails (the storage may be what is down) is retried with the next one. The queue
is bounded: past ``MAX_QUEUED`` transitions (a flapping breaker for hours) the oldest are dropped and
counted in the log. Transitions are rare (at most two per ``breaker_reset_ms``), so the table stays small.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

log = logging.getLogger(__name__)

TABLE = "ingest_breakers"
MAX_QUEUED = 1000
_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("at", _TS),
        ("breaker", pa.string()),
        ("from_state", pa.string()),
        ("to_state", pa.string()),
        ("failures", pa.int64()),
        ("ingestor", pa.string()),
    ]
)


@dataclass(frozen=True)
class Transition:
    at: datetime
    breaker: str
    from_state: str
    to_state: str
    failures: int
    ingestor: str


def location(platform) -> str:
    """The table's location: beside the backfill ledger (``backfill.ledger_path``)."""
    from fs_platform.backfill.settings import load_settings

    ledger = load_settings(platform.config).ledger_location(platform.repo_path)
    return f"{ledger.rstrip('/').rsplit('/', 1)[0]}/{TABLE}"


class BreakerLog:
    """``record`` is the breakers' ``on_change``; ``close`` writes what is queued. The writer thread
    starts with the first transition: an ingestor whose breakers never move writes nothing."""

    def __init__(self, where: str):
        self.where = where
        self._queue: deque[Transition] = deque(maxlen=MAX_QUEUED)
        self._wake = threading.Condition()
        self._closed = False
        self.dropped = 0
        self._me = f"{socket.gethostname()}:{os.getpid()}"
        self._thread: threading.Thread | None = None

    def record(self, breaker: str, from_state: str, to_state: str, failures: int) -> None:
        with self._wake:
            if self._thread is None or not self._thread.is_alive():  # first transition, or after close()
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="fs-ingest-breaker-log", daemon=True)
                self._thread.start()
            if len(self._queue) == MAX_QUEUED:
                self.dropped += 1
            self._queue.append(
                Transition(datetime.now(UTC), breaker, from_state, to_state, failures, self._me)
            )
            self._wake.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (waiting up to ``timeout_s``); a later ``record`` starts again."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        if self._queue:
            log.warning("%d breaker transition(s) not written to %s", len(self._queue), self.where)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            try:
                self._append(batch)
            except Exception as e:  # the storage may be the thing that is down: keep them, try again
                log.warning("breaker transitions not written to %s yet: %s", self.where, type(e).__name__)
                with self._wake:
                    self._queue.extendleft(reversed(batch))  # oldest first again (a full queue drops newest)
                    if self._closed:
                        return
                    self._wake.wait(5.0)
                continue
            if self.dropped:
                log.warning("%d breaker transition(s) dropped (queue full)", self.dropped)
                self.dropped = 0

    def _append(self, batch: list[Transition]) -> None:
        from deltalake import write_deltalake

        columns = {name: [getattr(t, name) for t in batch] for name in SCHEMA.names}
        write_deltalake(self.where, pa.Table.from_pydict(columns, schema=SCHEMA), mode="append")


def read_transitions(where: str, start: datetime, end: datetime) -> list[Transition]:
    """Transitions recorded in ``[start, end]``, oldest first; none if nothing was ever recorded."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(where)
    except TableNotFoundError:
        return []
    flt = (ds.field("at") >= pa.scalar(start, _TS)) & (ds.field("at") <= pa.scalar(end, _TS))
    rows = table.to_pyarrow_dataset().to_table(filter=flt).sort_by("at").to_pylist()
    return [Transition(**r) for r in rows]
