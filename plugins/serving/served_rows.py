"""The served-feature log's rows (``SCHEMA``, one per served entity row; the fields are described in
served_log.py): queued requests turned into an Arrow table, with PII masked or left out."""

from __future__ import annotations

import functools
import itertools
import math
import os
import uuid
from datetime import UTC, datetime

import orjson
import pyarrow as pa
from feast.value_type import ValueType

from fs_platform.plugins.serving.encode import json_values

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
_STATUS = {0: "INVALID", 1: "PRESENT", 2: "NULL_VALUE", 3: "NOT_FOUND", 4: "OUTSIDE_MAX_AGE"}
_DAY_US = 86_400_000_000


def rows_table(items: list, sensitive, pii_keys, hash_them: bool, source: str) -> pa.Table:
    """Queued requests -> rows of ``SCHEMA``: a sensitive feature's (or ``pii`` join key's) value masked
    (``hash_them``) or left out."""
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
        n = rows_of(served)
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
            cols["source"].append(source)
    return pa.table(cols, schema=SCHEMA)


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


def rows_of(served) -> int:
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
