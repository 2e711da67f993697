"""Aggregation views in Redis: tiles written atomically per entity (tiles.lua), merged at read time.

Per (entity, aggregation view) one string under the key a plain view's row would have
(``<prefix>:<project>:{<keys>}:<view>``), read by the same MGET as plain rows: the tiles, then the
writers' Kafka offset marks (earlier versions kept those in a hash beside it, ``...:<view>:_offsets``,
which the script folds into the string on the entity's next write). Tenant prefixes, ACLs and Cluster
slots work unchanged. Writers:

* ``tile_events.prepare_events``: the Kafka ingestor's raw events with their ``topic/partition`` and
  offset. Each event is applied once: a redelivered offset is a no-op, so replays after a crash add
  nothing.
* ``write_tiles``: tiles rebuilt by Spark from the raw Delta events (``fs materialize`` / backfill).

A read (``TileRead``) fetches the tiles (~1.6 KB per entity for the example view) in the same MGET as
the plain views' rows and merges them for all entities at once (``fs_platform.aggregation.tiles.Merger``): a
10-minute count decays without new events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from feast import FeatureView
from redis.crc import key_slot

from fs_platform.aggregation.spec import AggregationSpec, spec_of
from fs_platform.aggregation.tiles import Merger, layout
from fs_platform.errors import OnlineWriteError
from fs_platform.plugins.redis_store.connection import translated
from fs_platform.plugins.redis_store.reader import PRESENT, ViewRead, ViewResult

TILES_LUA = resources.files("fs_platform.plugins.redis_store").joinpath("tiles.lua").read_text()
TILES_SHA = hashlib.sha1(TILES_LUA.encode()).hexdigest()
MARKS = ":_offsets"  # suffix of an entity's legacy offset-marks hash (same hash tag, so the same slot)
_KEYS_PER_CALL = 50  # entities per script call: amortises its set-up, keeps each call short (~1 ms)
_CALLS_PER_PIPELINE = 40


class TileRead(ViewRead):
    """A compiled read of some features of an aggregation view."""

    def __init__(self, layout_, view: FeatureView, codec, features, join_key_map=None):
        super().__init__(layout_, view, codec, features, join_key_map)
        self.spec: AggregationSpec = spec_of(view)
        self.merger = Merger(self.spec)
        names = [f.name for f in self.spec.features]
        self.wanted = [names.index(f) for f in self.features]

    def result(self, replies: Sequence[bytes | None], now_us: int) -> ViewResult:
        """The stored tiles per entity row (GET/MGET replies) -> the requested features."""
        values = self.merger.values(replies, now_us)
        n = len(replies)
        return ViewResult([values[i] for i in self.wanted], [PRESENT] * n, [now_us] * n)


def program(spec: AggregationSpec) -> list[str]:
    """ARGV[1..5] of tiles.lua for a spec (see the script's header)."""
    slots = layout(spec)
    return [
        str(spec.fingerprint),
        "",  # mode, set per call
        "".join(k for k, _ in slots),
        ",".join(str(i) for _, i in slots),
        ",".join(f"{g.tile_us}:{g.tiles}:{g.tag}" for g in spec.granularities),
    ]


@dataclass(frozen=True)
class TileWriteResult:
    applied: int = 0
    duplicate: int = 0  # events already applied (redeliveries) or tiles the stream had more of
    filtered: int = 0  # events the view's ``where`` dropped

    def __add__(self, other: TileWriteResult) -> TileWriteResult:
        return TileWriteResult(
            self.applied + other.applied, self.duplicate + other.duplicate, self.filtered + other.filtered
        )


def script_calls(state, head: list[str], per_key: list[tuple[str, list]]) -> list[tuple[list[str], list]]:
    """Script calls of up to ``_KEYS_PER_CALL`` keys each (one slot per call in Cluster mode): the
    script's set-up (parsing the layout) is paid once per call, not per entity."""
    if state.cluster:
        groups: dict[int, list[tuple[str, list]]] = {}
        for key, items in per_key:
            groups.setdefault(key_slot(key.encode()), []).append((key, items))
        members_of = list(groups.values())
    else:
        members_of = [per_key]
    out = []
    for members in members_of:
        for start in range(0, len(members), _KEYS_PER_CALL):
            argv, keys = list(head), []
            for key, items in members[start : start + _KEYS_PER_CALL]:
                argv += items
                keys += (key, key + MARKS)
            out.append((keys, argv))
    return out


def send_calls(state, calls: list[tuple[list[str], list[str]]], progress=None) -> tuple[int, list[str]]:
    """EVALSHA tiles.lua per call, pipelined; the total applied and the keys the script asks to be sent
    event by event. Every call is idempotent, so a batch is resent whole after loading the script
    (first use on a server, or after a failover). ``progress()`` after each round trip."""
    applied, resend = 0, []
    for start in range(0, len(calls), _CALLS_PER_PIPELINE):
        commands = [
            ("EVALSHA", (TILES_SHA, len(keys), *keys, *argv))
            for keys, argv in calls[start : start + _CALLS_PER_PIPELINE]
        ]
        replies = state.pipelined(commands)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            with translated(state.endpoint):
                state.client.script_load(TILES_LUA)
            replies = state.pipelined(commands)
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            raise OnlineWriteError(f"tile write failed: {errors[0]}")
        for reply in replies:
            applied += reply[0]
            resend += [k.decode() if isinstance(k, bytes) else k for k in reply[1:]]
        if progress is not None:
            progress()
    return applied, resend


def _group(keys: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def entity_codes(state, view: FeatureView, read: ViewRead, table: pa.Table) -> tuple[list[str], np.ndarray]:
    """The distinct tile keys of ``table``'s entities and each row's index into them. A single join key
    is dictionary-encoded first, so a key string is built once per entity, not per event."""
    missing = [k for k in read.join_keys if k not in table.column_names]
    if missing:
        raise OnlineWriteError(f"events for {view.name!r} lack join key column(s) {', '.join(missing)}")
    columns = [table.column(k) for k in read.join_keys]
    if any(c.null_count for c in columns):
        raise OnlineWriteError(f"events for {view.name!r} have a null join key")
    if len(columns) == 1:
        encoded = pc.dictionary_encode(columns[0].combine_chunks())
        names = state.layout.arrow_keys(
            view.name, read.join_keys, read.key_types, read.tokens, [pa.chunked_array([encoded.dictionary])]
        )
        return names, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    keys = state.layout.arrow_keys(view.name, read.join_keys, read.key_types, read.tokens, columns)
    encoded = pc.dictionary_encode(pa.array(keys, pa.string()))
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


@lru_cache(maxsize=256)
def compiled(tag: str) -> tuple[AggregationSpec, list[str]]:
    """A view's spec and its script head, parsed once per spec (not on every write)."""
    spec = AggregationSpec.from_json(tag)
    return spec, program(spec)


def write_tiles(state, view: FeatureView, tiles: pa.Table) -> TileWriteResult:
    """Write tiles rebuilt by Spark (``fs_platform.plugins.delta.aggregation_tiles.tiles``: join keys,
    ``tag``, ``tile``, ``s0..``) into the view's hashes; a stored tile that counted more events stays."""
    spec = spec_of(view)
    read = TileRead(state.layout, view, state.codec(view), [])
    width = len(layout(spec))
    slots = (
        np.column_stack(
            [tiles.column(f"s{i}").to_numpy(zero_copy_only=False).astype("<f8") for i in range(width)]
        )
        if tiles.num_rows
        else np.empty((0, width))
    )
    records = [row.tobytes() for row in np.ascontiguousarray(slots, dtype="<f8")]
    tags = tiles.column("tag").to_pylist()
    index = tiles.column("tile").to_pylist()
    head = program(spec)
    head[1] = "t"
    per_key = []
    names, entity = entity_codes(state, view, read, tiles)
    for key, rows in _group([names[e] for e in entity.tolist()]).items():
        items = [str(len(rows))]
        for i in rows:
            items += [tags[i], str(index[i]), records[i]]
        per_key.append((key, items))
    applied, _ = send_calls(state, script_calls(state, head, per_key))
    return TileWriteResult(applied, tiles.num_rows - applied)
