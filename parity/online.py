"""Reading what the online store serves for a list of entity keys, with event times.

With the fs Redis store this goes through the store's own read path (keys, MGET, decode) with the
ttl evaluated at ``as_of`` instead of the wall clock, so a check pinned to a time is reproducible and
an expired-but-still-held row is visible as such. Any other Feast online store is read through
``online_read`` (ttl at the wall clock, held-but-expired rows look absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values

from fs_platform import feast_compat
from fs_platform.aggregation.spec import is_aggregation
from fs_platform.parity.classify import ABSENT, HELD_EXPIRED, SERVED
from fs_platform.parity.targets import Target
from fs_platform.timeutil import epoch_micros

CHUNK = 10_000  # keys per MGET: bounds reply size and stays far below the socket timeout


@dataclass
class OnlineRows:
    state: np.ndarray  # int8 SERVED | HELD_EXPIRED | ABSENT, in key order
    event_us: np.ndarray  # int64, 0 where absent
    values: dict[str, list]  # feature -> Python values (None unless served)
    created_us: np.ndarray | None = None  # int64 created times (0 where absent); None: not readable


def read_online(store, target: Target, keys: pa.Table, as_of: datetime) -> OnlineRows:
    online_store = feast_compat.online_store(store)
    # Imported here: the Redis plugin is optional for parity (any Feast online store works).
    from fs_platform.plugins.redis_store.online_store import RedisOnlineStore

    if isinstance(online_store, RedisOnlineStore):
        if is_aggregation(target.view):
            return _read_tiles(online_store, store.config, target, keys, epoch_micros(as_of))
        return _read_redis(online_store, store.config, target, keys, epoch_micros(as_of))
    return _read_generic(online_store, store.config, target, keys)


def _read_redis(online_store, config, target: Target, keys: pa.Table, as_of_us: int) -> OnlineRows:
    from fs_platform.plugins.redis_store.reader import NOT_FOUND, OUTSIDE_MAX_AGE

    code = {NOT_FOUND: ABSENT, OUTSIDE_MAX_AGE: HELD_EXPIRED}
    states, events, created = [], [], []
    values: dict[str, list] = {f: [] for f in target.features}
    for start in range(0, keys.num_rows, CHUNK):
        part = keys.slice(start, CHUNK)
        columns = {k: part[k].to_pylist() for k in target.join_keys}
        result, created_part = online_store.read_rows_with_created(
            config, target.view, target.features, columns, part.num_rows, as_of_us
        )
        states.extend(code.get(s, SERVED) for s in result.statuses)
        events.extend(result.event_us)
        created.extend(created_part)
        for f, col in zip(target.features, result.values, strict=True):
            values[f].extend(col)
    return OnlineRows(
        np.array(states, dtype=np.int8), np.array(events, dtype=np.int64), values, np.array(created, np.int64)
    )


def _read_tiles(online_store, config, target: Target, keys: pa.Table, as_of_us: int) -> OnlineRows:
    """An aggregation view's values merged from its tiles as of ``as_of`` (every key is served: a
    key without events has count 0). The tiles only hold the present: ``as_of`` must be about now."""
    values: dict[str, list] = {f: [] for f in target.features}
    for start in range(0, keys.num_rows, CHUNK):
        part = keys.slice(start, CHUNK)
        columns = {k: part[k].to_pylist() for k in target.join_keys}
        result = online_store.read_view(
            config, target.view, target.features, columns, part.num_rows, as_of_us
        )
        for f, col in zip(target.features, result.values, strict=True):
            values[f].extend(col)
    n = keys.num_rows
    return OnlineRows(
        np.full(n, SERVED, np.int8), np.full(n, as_of_us, np.int64), values, np.zeros(n, np.int64)
    )


def _read_generic(online_store, config, target: Target, keys: pa.Table) -> OnlineRows:
    types = {c.name: c.dtype.to_value_type() for c in target.view.entity_columns}
    protos = {k: python_values_to_proto_values(keys[k].to_pylist(), types[k]) for k in target.join_keys}
    entity_keys = [
        EntityKeyProto(
            join_keys=list(target.join_keys), entity_values=[protos[k][i] for k in target.join_keys]
        )
        for i in range(keys.num_rows)
    ]
    rows = online_store.online_read(config, target.view, entity_keys, list(target.features))
    state = np.full(len(rows), ABSENT, dtype=np.int8)
    event_us = np.zeros(len(rows), dtype=np.int64)
    values: dict[str, list] = {f: [None] * len(rows) for f in target.features}
    for i, (ts, row) in enumerate(rows):
        if ts is None or row is None:
            continue
        state[i], event_us[i] = SERVED, epoch_micros(ts)
        for f in target.features:
            if f in row:
                values[f][i] = feast_value_type_to_python_type(row[f])
    return OnlineRows(state, event_us, values)
