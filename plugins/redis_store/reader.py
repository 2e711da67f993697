"""The read path shared by Feast's API and the fast API: keys -> one MGET -> columns.

All requested views for all entities go out as ONE command (standalone/Sentinel) or one MGET
per hash slot in one pipeline (Cluster: an entity's views share a slot, so one round trip per
node). The replies are joined into one JSON array and decoded by a single ``orjson.loads``; rows
are then transposed with ``zip``, so scalar features cost no per-value Python work.

TTL is enforced at read time with the offline meaning: a row whose event time is older than
``now - ttl`` is not served (status OUTSIDE_MAX_AGE), even if Redis has not expired the key yet
(unless the store's ``enforce_view_ttl`` is off: Feast's behaviour, every stored value served).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson
from feast import FeatureView
from feast.feature_view import DUMMY_ENTITY_ID
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.value_type import ValueType

from fs_platform.errors import UnknownFeatureError
from fs_platform.plugins.redis_store.codec import HEADER, ViewCodec
from fs_platform.plugins.redis_store.keys import KeyLayout, token_fn
from fs_platform.timeutil import duration_micros

_json_decode = json.JSONDecoder().decode  # json.loads without its per-call argument checks

PRESENT = FieldStatus.PRESENT
NOT_FOUND = FieldStatus.NOT_FOUND
OUTSIDE_MAX_AGE = FieldStatus.OUTSIDE_MAX_AGE


class ViewRead:
    """A compiled read of some features of one view (built once per request shape, cached)."""

    def __init__(
        self,
        layout: KeyLayout,
        view: FeatureView,
        codec: ViewCodec,
        features: Sequence[str] | None,
        join_key_map: Mapping[str, str] | None = None,
        *,
        ttl: bool = True,
    ):
        """``ttl=False`` (``enforce_view_ttl: false``): values are served whatever their age, and
        writes neither drop rows older than the ttl nor expire keys by it (Feast's behaviour)."""
        self.view_name = view.name
        self.codec = codec
        self.features = list(features) if features is not None else list(codec.names)
        unknown = [f for f in self.features if f not in codec.index]
        if unknown:
            raise UnknownFeatureError(
                f"feature view {view.name!r} has no feature(s) {', '.join(unknown)}",
                hint=f"known: {', '.join(codec.names)}",
            )
        types = {c.name: c.dtype.to_value_type() for c in view.entity_columns}
        if not types:  # an entity-less view (Feast hides its dummy entity): keyed by the dummy key
            types = {DUMMY_ENTITY_ID: ValueType.STRING}
        self.join_keys = sorted(types)
        join_key_map = join_key_map or {}
        self.request_columns = tuple(join_key_map.get(jk, jk) for jk in self.join_keys)
        self.key_types = [types[jk] for jk in self.join_keys]
        self.tokens = [token_fn(jk, types[jk]) for jk in self.join_keys]
        self.before, self.after = layout.view_affixes(view.name)
        self.positions = [HEADER + codec.index[f] for f in self.features]
        self.decoders = [codec.decoder(codec.index[f]) for f in self.features]
        self.plain = all(d is None for d in self.decoders)  # every value is served as parsed
        self.types = [codec.types[codec.index[f]] for f in self.features]
        # A zero or negative ttl means no limit, as offline (Feast does not reject a negative one).
        self.ttl_us = max(duration_micros(view.ttl), 0) if view.ttl and ttl else 0
        self.empty_row = [None] * (HEADER + len(codec.names))


@dataclass
class ViewResult:
    values: list[list]  # one list per requested feature, one value per entity row
    statuses: list[int]
    event_us: list[int]  # 0 where not found


def build_keys(layout: KeyLayout, reads: Sequence[ViewRead], columns: Mapping[str, Sequence]) -> list[str]:
    """Keys in (view, entity row) order; entity tags are computed once per join-key set."""
    keys: list[str] = []
    tags_by_cols: dict[tuple, list[str]] = {}
    for r in reads:
        tags = tags_by_cols.get(r.request_columns)
        if tags is None:
            try:
                cols = [columns[c] for c in r.request_columns]
            except KeyError as e:
                raise UnknownFeatureError(
                    f"entity rows lack join key {e.args[0]!r} needed by {r.view_name!r}"
                ) from None
            tags = tags_by_cols[r.request_columns] = layout.entity_tags(r.join_keys, r.tokens, cols)
        before, after = r.before, r.after
        keys.extend([before + t + after for t in tags])
    return keys


def decode(
    reads: Sequence[ViewRead],
    replies: Sequence[bytes | None],
    n: int,
    old_schema: Callable[[str, int], str | None],
    now_us: int | None = None,
) -> list[ViewResult]:
    """Turn MGET replies (``build_keys`` order) into per-view columns with statuses."""
    if n == 0:
        return [ViewResult([[] for _ in r.features], [], []) for r in reads]
    if len(replies) == 1:
        x = replies[0]
        rows = [None if x is None else _parse(x)]
    else:
        rows = _parse(b"[" + b",".join([x or b"null" for x in replies]) + b"]")
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    if n == 1:
        return [_decode_one(r, row, now_us, old_schema) for r, row in zip(reads, rows, strict=True)]
    results = []
    for v, r in enumerate(reads):
        part = rows[v * n : (v + 1) * n]
        statuses = [PRESENT] * n
        event_us = [0] * n
        cutoff = now_us - r.ttl_us if r.ttl_us else None
        fp = r.codec.fingerprint
        empty = r.empty_row
        for i, row in enumerate(part):
            if row is None:
                statuses[i] = NOT_FOUND
                part[i] = empty
                continue
            event_us[i] = row[0]
            if cutoff is not None and row[0] < cutoff:
                statuses[i] = OUTSIDE_MAX_AGE
                part[i] = empty
            elif row[2] != fp:
                part[i] = _remap(r, row, old_schema)
        cols = list(zip(*part, strict=True))
        values = []
        for pos, dec in zip(r.positions, r.decoders, strict=True):
            col = cols[pos]
            values.append(list(col) if dec is None else [None if x is None else dec(x) for x in col])
        results.append(ViewResult(values, statuses, event_us))
    return results


def _parse(raw: bytes):
    """orjson (3-5x faster); the standard parser for what orjson refuses (NaN and infinities, lone
    surrogates). Stored integers are 64-bit (Feast's integer types), which orjson parses exactly."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json_decode(raw.decode("utf-8", "surrogatepass"))


def _decode_one(r: ViewRead, row, now_us: int, old_schema) -> ViewResult:
    """``decode`` of one entity row (the hot single-entity case, without the transpose)."""
    if row is None:
        return ViewResult([[None] for _ in r.positions], [NOT_FOUND], [0])
    event_us = row[0]
    if r.ttl_us and event_us < now_us - r.ttl_us:
        return ViewResult([[None] for _ in r.positions], [OUTSIDE_MAX_AGE], [event_us])
    if row[2] != r.codec.fingerprint:
        row = _remap(r, row, old_schema)
    if r.plain:
        return ViewResult([[row[pos]] for pos in r.positions], [PRESENT], [event_us])
    values = []
    for pos, dec in zip(r.positions, r.decoders, strict=True):
        x = row[pos]
        values.append([x if dec is None or x is None else dec(x)])
    return ViewResult(values, [PRESENT], [event_us])


def _remap(r: ViewRead, row: list, old_schema: Callable[[str, int], str | None]) -> list:
    """A row written under another schema, rearranged by feature name (unknown -> null)."""
    schema_json = old_schema(r.view_name, row[2])
    if schema_json is None:
        return r.empty_row
    positions = r.codec.remap(row[2], schema_json)
    return row[:HEADER] + [None if p is None else row[HEADER + p] for p in positions]
