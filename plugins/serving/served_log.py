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

One row per served entity row (``SCHEMA``):

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

import functools
import itertools
import logging
import math
import os
import random
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
from feast.value_type import ValueType
from prometheus_client import Counter

from fs_platform.observability import REGISTRY
from fs_platform.plugins.serving.encode import json_values
from fs_platform.plugins.serving.settings import ServedLogSettings
from fs_platform.scrub import summary

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("served_at", pa.timestamp("us", tz="UTC")),
        ("served_date", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("feature_service", pa.string()),
        ("row", pa.int32()),
        ("entities", pa.string()),
        ("features", pa.string()),
        ("statuses", pa.string()),
        ("event_us", pa.string()),
        ("source", pa.string()),
    ]
)
REQUEST_ID, MODEL_NAME, MODEL_VERSION = b"x-request-id", b"x-model-name", b"x-model-version"

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
_STATUS = {0: "INVALID", 1: "PRESENT", 2: "NULL_VALUE", 3: "NOT_FOUND", 4: "OUTSIDE_MAX_AGE"}
_PII_REFRESH_S = 30.0
_POLL_S = 0.2
_DAY_US = 86_400_000_000


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
        """The SDK's opt-in for ``FastReader``: log a sample of ``served = reader.serve(...)`` (sampled here)."""
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
        """Write every queued request now; the number of rows written (a failed write is counted and dropped)."""
        written = 0
        with self._write_lock:
            while self._queue:
                items, rows = [], 0
                while self._queue and rows < self.settings.batch_rows:
                    item = self._queue.popleft()
                    items.append(item)
                    rows += _rows_of(item[4])
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
        hash_them = self.settings.pii == "hash"
        from fs_platform.governance.pii import mask

        cols: dict[str, list] = {name: [] for name in SCHEMA.names}
        days: dict[int, str] = {}
        for served_us, meta, service, n_features, served in items:
            request_id, model, version = _meta(meta)
            day = days.get(served_us // _DAY_US)
            if day is None:
                day = days[served_us // _DAY_US] = datetime.fromtimestamp(served_us / 1e6, UTC).strftime(
                    "%Y-%m-%d"
                )
            n = _rows_of(served)
            k = len(served.names) - n_features if n_features is not None else served.key_columns
            columns = []
            for j, name in enumerate(served.names):
                secret = name in (pii_keys if j < k else sensitive)
                if secret and not hash_them:
                    continue
                values = _jsonable(served.values[j], None if served.types is None else served.types[j])
                if secret:
                    values = [mask(v) if v is not None else None for v in values]
                columns.append((j < k, name, values, served.statuses[j], served.event_us[j]))
            for i in range(n):
                entities, features, statuses, events = {}, {}, {}, {}
                for is_key, name, values, st, ev in columns:
                    if is_key:
                        entities[name] = values[i]
                        continue
                    features[name] = values[i]
                    statuses[name] = "PRESENT" if st is None else _STATUS.get(st[i], "INVALID")
                    events[name] = None if ev is None or not ev[i] else int(ev[i])
                cols["request_id"].append(request_id)
                cols["served_at"].append(served_us)
                cols["served_date"].append(day)
                cols["model_name"].append(model)
                cols["model_version"].append(version)
                cols["feature_service"].append(service)
                cols["row"].append(i)
                cols["entities"].append(orjson.dumps(entities).decode())
                cols["features"].append(orjson.dumps(features).decode())
                cols["statuses"].append(orjson.dumps(statuses).decode())
                cols["event_us"].append(orjson.dumps(events).decode())
                cols["source"].append(self.source)
        return pa.table(cols, schema=SCHEMA)

    def _pii(self) -> tuple[frozenset[str], frozenset[str]]:
        """(sensitive feature output names, join keys of ``pii`` entities), re-read every 30 s."""
        now = time.monotonic()
        if self._sensitive is None or now - self._sensitive_at > _PII_REFRESH_S:
            self._sensitive = sensitive_names(self._store)
            self._sensitive_at = now
        return self._sensitive


class ResponseServed:
    """A Feast ``OnlineResponse`` seen as ``Served`` columns, decoded when first read (in the writer thread,
    not the caller's). Join-key columns are those named like a column of the request's entity rows."""

    types = None  # generic JSON conversion of the decoded Python values

    def __init__(self, response, entity_columns: frozenset[str]):
        self._response = response
        self._entity_columns = entity_columns

    @functools.cached_property
    def _columns(self):
        from feast.type_map import feast_value_type_to_python_type

        proto = self._response.proto
        names = list(proto.metadata.feature_names.val)
        values, statuses, events = [], [], []
        for result in proto.results:
            values.append([feast_value_type_to_python_type(v) for v in result.values])
            statuses.append(list(result.statuses))
            events.append([ts.seconds * 1_000_000 + ts.nanos // 1000 for ts in result.event_timestamps])
        return names, values, statuses, events

    @property
    def names(self) -> list[str]:
        return self._columns[0]

    @property
    def values(self) -> list[list]:
        return self._columns[1]

    @property
    def statuses(self) -> list[list[int]]:
        return self._columns[2]

    @property
    def event_us(self) -> list[list[int]]:
        return self._columns[3]

    @property
    def key_columns(self) -> int:
        return sum(1 for n in self.names if n in self._entity_columns)


def sensitive_names(store) -> tuple[frozenset[str], frozenset[str]]:
    """Output names of PII-classified features (``feature`` and ``view__feature``, over every view: a
    name sensitive in any view is treated as sensitive) and the join keys of entities tagged ``pii``."""
    from fs_platform.metadata import entity_pii_class, is_sensitive

    views = [
        *store.list_all_feature_views(allow_cache=True),
        *store.list_on_demand_feature_views(allow_cache=True),
    ]
    names = set()
    for view in views:
        for f in view.features:
            if is_sensitive(f, view):
                names.update((f.name, f"{view.name}__{f.name}"))
    keys = {e.join_key for e in store.list_entities(allow_cache=True) if entity_pii_class(e) == "pii"}
    return frozenset(names), frozenset(keys)


def _rows_of(served) -> int:
    return len(served.values[0]) if served.values else 0


_ids = itertools.count()
_ID_PREFIX: list[str] = []  # per process (a forked worker gets its own): uuid4 per row costs more than a row


def _new_id() -> str:
    if not _ID_PREFIX or _ID_PREFIX[0] != str(os.getpid()):
        _ID_PREFIX[:] = [str(os.getpid()), uuid.uuid4().hex[:16]]
    return f"{_ID_PREFIX[1]}-{next(_ids)}"


def _meta(meta) -> tuple[str, str | None, str | None]:
    if isinstance(meta, tuple):
        request_id, model, version = meta
        return request_id or _new_id(), model, version
    request_id = model = version = None
    for name, value in meta:
        if name == REQUEST_ID:
            request_id = value.decode("latin-1")[:128]
        elif name == MODEL_NAME:
            model = value.decode("latin-1")[:128]
        elif name == MODEL_VERSION:
            version = value.decode("latin-1")[:128]
    return request_id or _new_id(), model, version


def _jsonable(values: list, vt) -> list:
    """A served column in JSON form: ``fs serve``'s own encoding for known types, else a generic one."""
    if vt is not None and vt is not ValueType.UNKNOWN:
        try:
            return json_values(values, vt)
        except Exception:  # noqa: BLE001 - an odd value falls back to the generic form below
            pass
    return [_native(v) for v in values]


def _native(v):
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [_native(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


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
