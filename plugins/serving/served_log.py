"""Served-feature logging: a sample of the feature vectors ``fs serve`` (or, opt-in, the SDK) served,
appended to a Delta table that ``fs parity skew`` compares with the offline store.

    # serve.yaml
    served_log:
      sample: 0.01                     # share of requests logged; 0 (default): off
      path: data/_fs/served_features   # Delta table (relative to the repo, or a URI)
      pii: hash                        # hash | exclude

One ``ServedLog`` per process (``fs serve`` forks its workers, each gets its own). The request path
decides the sample with one ``random()`` and, if sampled, appends a reference to what it already
served to a bounded deque: O(1), no I/O, no lock waited on, nothing that can raise into the request.
A daemon thread (started by the first sampled request, so after the fork) turns batches into rows
and appends them to the Delta table every ``flush_s`` seconds, or once half of ``queue_max`` is queued
(appends cost milliseconds each whatever their size: few and large ones keep a row cheap). A full queue
drops the request's log entry and a failed write drops its batch, both counted in
``fs_served_log_dropped_total{reason}`` (``queue_full``, ``write_failed``): logging never blocks or
fails a request. ``close()`` (``fs serve``'s graceful drain calls it) writes what is queued.

One row per served entity row (``served_rows.SCHEMA``, built there):

    request_id       the caller's ``X-Request-Id`` header, else generated
    served_at        when the response was assembled (UTC, microseconds); served_date: its day (partition)
    model_name       ``X-Model-Name`` header (``fs serve``) or the SDK caller's argument; null if none
    model_version    ``X-Model-Version`` header, likewise
    feature_service  the feature service (``features`` for a feature-list request)
    row              the entity row's position in the request
    entities         JSON: join key -> value
    features         JSON: feature output name -> value (JSON form of the served value)
    statuses         JSON: feature -> PRESENT | NOT_FOUND | NULL_VALUE | OUTSIDE_MAX_AGE | INVALID
    event_us         JSON: feature -> event time of the served value (epoch microseconds; null if none)
    source           ``serve`` or ``sdk``

PII (``fs_platform.metadata.is_sensitive``): a sensitive feature's value, and the value of a join key of
an entity tagged ``pii``, is written as ``mask(value)`` (``pii: hash``, a keyed token:
``$FS_PII_MASK_KEY`` makes tokens equal across workers and runs) or left out (``pii: exclude``).
Nothing here logs values or keys.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from pathlib import Path

import pyarrow as pa
from prometheus_client import Counter

from fs_platform.observability import REGISTRY
from fs_platform.plugins.serving.served_rows import ResponseServed, rows_of, rows_table, sensitive_names
from fs_platform.plugins.serving.settings import ServedLogSettings
from fs_platform.scrub import summary

log = logging.getLogger(__name__)

DROPPED = Counter(
    "fs_served_log_dropped_total",
    "Sampled requests whose served features were not logged (queue_full: the worker's queue was full; "
    "write_failed: the Delta append failed).",
    ["reason"],
    registry=REGISTRY,
)
WRITTEN = Counter(
    "fs_served_log_rows_total", "Served entity rows appended to the served-feature log.", registry=REGISTRY
)
_QUEUE_FULL = DROPPED.labels("queue_full")
_WRITE_FAILED = DROPPED.labels("write_failed")
_PII_REFRESH_S = 30.0
_POLL_S = 0.2


class ServedLog:
    """A bounded, batched, background writer of served vectors to one Delta table (one per process)."""

    def __init__(
        self,
        store,
        location: str,
        settings: ServedLogSettings,
        source: str = "serve",
        model_name: str | None = None,
        model_version: str | None = None,
    ):
        self.rate = settings.sample
        self.model_name, self.model_version = model_name, model_version
        self.location = location
        self.settings = settings
        self.source = source
        self._store = store
        self._queue: deque = deque()
        self._max = settings.queue_max
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._sensitive: tuple[frozenset[str], frozenset[str]] | None = None
        self._sensitive_at = 0.0
        self._delta = None  # the open Delta table (writer thread only)

    # --- the request path ------------------------------------------------------------------------
    def offer(self, meta, feature_service: str, n_features: int, served) -> None:
        """Queue what a request served: O(1), never blocks, never raises. ``meta``: the request's ASGI
        headers, or ``(request_id, model_name, model_version)``; ``served``: a ``Served`` whose last
        ``n_features`` columns are the features (the others are join keys)."""
        if len(self._queue) >= self._max:
            _QUEUE_FULL.inc()
            return
        self._queue.append((time.time_ns() // 1000, meta, feature_service, n_features, served))
        if self._thread is None:
            self._start()

    def record(
        self, reader, served, feature_service: str = "features", request_id: str | None = None
    ) -> None:
        """The SDK's opt-in for ``FastReader``: log a sample (drawn here) of ``reader.serve(...)`` answers."""
        if random.random() < self.rate:
            meta = (request_id, self.model_name, self.model_version)
            self.offer(meta, feature_service, len(reader.names), served)

    def log_response(self, features, entity_rows, response) -> None:
        """``FsFeatureStore.get_online_features``'s hook: sample, then queue the response (decoded later).
        A method, so the core store calls it without importing this plugin."""
        if random.random() >= self.rate:
            return
        if isinstance(features, list | tuple):
            service = "features"
        else:
            service = getattr(features, "name", "features")
        columns = (
            entity_rows.keys()
            if isinstance(entity_rows, dict)
            else (entity_rows[0].keys() if entity_rows else ())
        )
        served = ResponseServed(response, frozenset(columns))
        self.offer((None, self.model_name, self.model_version), service, None, served)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fs-served-log", daemon=True)
        self._thread.start()

    # --- the writer --------------------------------------------------------------------------------
    def _run(self) -> None:
        last = time.monotonic()
        while True:
            stopping = self._stop.wait(_POLL_S)
            due = time.monotonic() - last >= self.settings.flush_s or len(self._queue) >= self._max // 2
            if stopping or due:
                self.flush()
                last = time.monotonic()
            if stopping:
                return

    def flush(self) -> int:
        """Write every queued request now; the number of rows written (a failed write: counted, dropped)."""
        written = 0
        with self._write_lock:
            while self._queue:
                items, rows = [], 0
                while self._queue and rows < self.settings.batch_rows:
                    item = self._queue.popleft()
                    items.append(item)
                    rows += rows_of(item[4])
                try:
                    table = self._table(items)
                    self._append(table)
                except Exception as e:  # noqa: BLE001 - logging must never take the server down
                    _WRITE_FAILED.inc(len(items))
                    log.warning(
                        "served-feature log: %d sampled requests not written to %s: %s",
                        len(items),
                        self.location,
                        summary(e),
                    )
                    continue
                WRITTEN.inc(table.num_rows)
                written += table.num_rows
        return written

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer after writing what is queued (graceful drain); waits at most ``timeout`` s."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self.flush()  # what a writer that never started (or stopped before) left queued
            self._thread, self._stop = None, threading.Event()  # a later sampled request starts a new writer

    def _append(self, table: pa.Table) -> None:
        """One Delta commit. The table is kept open: each append then reads only the commits since the
        last one (reopening it read the log since the last checkpoint every time, ~5x the CPU)."""
        from deltalake import DeltaTable, write_deltalake

        for attempt in range(3):  # workers append concurrently; the first writes race to create the table
            try:
                if self._delta is None and DeltaTable.is_deltatable(self.location):
                    self._delta = DeltaTable(self.location)
                target = self._delta if self._delta is not None else self.location
                write_deltalake(target, table, mode="append", partition_by=["served_date"])
                return
            except Exception:
                self._delta = None  # reopened on the next attempt
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))  # an uncommitted attempt leaves nothing visible: retry

    # --- rows ---------------------------------------------------------------------------------------
    def _table(self, items: list) -> pa.Table:
        sensitive, pii_keys = self._pii()
        return rows_table(items, sensitive, pii_keys, self.settings.pii == "hash", self.source)

    def _pii(self) -> tuple[frozenset[str], frozenset[str]]:
        """(sensitive feature output names, join keys of ``pii`` entities), re-read every 30 s."""
        now = time.monotonic()
        if self._sensitive is None or now - self._sensitive_at > _PII_REFRESH_S:
            self._sensitive = sensitive_names(self._store)
            self._sensitive_at = now
        return self._sensitive


def enable(
    store,
    *,
    sample: float = 1.0,
    path: str | None = None,
    pii: str = "hash",
    model_name: str | None = None,
    model_version: str | None = None,
    **settings,
) -> ServedLog:
    """Opt-in served-feature logging of an SDK process's online reads (``source`` = ``sdk``), into the
    same table as ``fs serve`` (default ``served_log.path`` of the repo's serve.yaml):
    ``store.get_online_features`` on an ``FsFeatureStore`` (``Platform.store``) is sampled from now on,
    and ``log.record(reader, reader.serve(...))`` logs ``FastReader`` reads. ``store.close()`` flushes."""
    from fs_platform.plugins.delta.tables import resolve_path
    from fs_platform.plugins.serving.settings import load

    repo = getattr(store, "repo_path", None)
    default = load(Path(repo)).served_log if repo else ServedLogSettings()
    config = ServedLogSettings(
        **{**default.model_dump(), "sample": sample, "pii": pii, **settings, "path": path or default.path}
    )
    log_ = ServedLog(store, resolve_path(config.path, repo), config, "sdk", model_name, model_version)
    store.served_log = log_
    return log_


def for_serve(store, repo_path: str | None, settings: ServedLogSettings) -> ServedLog | None:
    """The server's log, or None when ``sample`` is 0 (off: the request path pays one ``is None``)."""
    if not settings.sample:
        return None
    from fs_platform.plugins.delta.tables import resolve_path

    return ServedLog(store, resolve_path(settings.path, repo_path), settings)
