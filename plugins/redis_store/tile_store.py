"""Aggregation views in Redis: tiles written atomically per entity (tiles.lua), merged at read time.

Per (entity, aggregation view) one string under the key a plain view's row would have
(``<prefix>:<project>:{<keys>}:<view>``), read by the same MGET as plain rows: the tiles, then the
writers' Kafka offset marks (earlier versions kept those in a hash beside it, ``...:<view>:_offsets``,
which the script folds into the string on the entity's next write). Tenant prefixes, ACLs and Cluster
slots work unchanged. Writers:

* ``write_events``: the Kafka ingestor's raw events with their ``topic/partition`` and offset. Each
  event is applied once: a redelivered offset is a no-op, so replays after a crash add nothing.
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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from feast import FeatureView
from redis.crc import key_slot

from fs_platform.aggregation.spec import TAG, AggregationSpec, spec_of
from fs_platform.aggregation.tile_records import inputs_of_views, partials
from fs_platform.aggregation.tiles import Merger, layout
from fs_platform.errors import OnlineWriteError
from fs_platform.observability import span
from fs_platform.plugins.redis_store.connection import translated
from fs_platform.plugins.redis_store.reader import PRESENT, ViewRead, ViewResult
from fs_platform.timeutil import arrow_epoch_micros

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


def _calls(state, head: list[str], per_key: list[tuple[str, list]]) -> list[tuple[list[str], list]]:
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


def _send(state, calls: list[tuple[list[str], list[str]]], progress=None) -> tuple[int, list[str]]:
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


def _entity_codes(state, view: FeatureView, read: ViewRead, table: pa.Table) -> tuple[list[str], np.ndarray]:
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
def _compiled(tag: str) -> tuple[AggregationSpec, list[str]]:
    """A view's spec and its script head, parsed once per spec (not on every write)."""
    spec = AggregationSpec.from_json(tag)
    return spec, program(spec)


def _blocks(
    spec: AggregationSpec,
    group: np.ndarray,
    groups: int,
    times: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
) -> list[bytes]:
    """Mode b's packed blocks, one per group (entity x partition): little-endian doubles, a header
    ``first offset, last offset, events, tiles`` then per tile ``tile size index, tile index, slots...``
    (``partials``' records): one script argument per block, built with numpy, decoded by one
    struct.unpack per tile in the script."""
    gid, gi, tile, records = partials(spec, group, times, values)
    head = np.empty((groups, 4), dtype="<f8")
    first = np.full(groups, np.iinfo(np.int64).max)
    last = np.full(groups, -1)
    np.minimum.at(first, group, offsets)
    np.maximum.at(last, group, offsets)
    head[:, 0], head[:, 1] = first, last
    head[:, 2] = np.bincount(group, minlength=groups)
    counts = np.bincount(gid, minlength=groups)
    head[:, 3] = counts
    order = np.argsort(gid, kind="stable")
    body = np.empty((len(gid), 2 + records.shape[1]), dtype="<f8")
    body[:, 0], body[:, 1], body[:, 2:] = gi[order], tile[order], records[order]
    heads, rows = head.tobytes(), body.tobytes()
    row, ends = body.shape[1] * 8, np.cumsum(counts).tolist()
    out, start = [], 0
    for g, end in enumerate(ends):
        out.append(heads[32 * g : 32 * g + 32] + rows[start * row : end * row])
        start = end
    return out


@dataclass
class EventWrite:
    """Raw events packed for ``tiles.lua`` (``prepare_events``), ready to send: the ingestor packs on
    its loop thread and sends on its writer thread, so that thread holds the GIL only to send and read
    (packing there meant ~10 numpy calls per view and tile size, each giving up the GIL and waiting up
    to the switch interval to take it back from the busy loop thread: most of a write's time)."""

    state: Any
    views: Sequence[FeatureView]
    calls: list[tuple[list[str], list]]
    fallbacks: dict  # view name -> what an entity's event-by-event resend needs
    partitions: Sequence[str]
    offsets: np.ndarray
    times: np.ndarray
    expire: bool
    total: int  # events kept by the views' filters, summed over views
    filtered: int

    def send(self, progress=None) -> TileWriteResult:
        """Apply the events (idempotent: resent whole after a failure); ``progress()`` after each round
        trip (a long write is not a hung one)."""
        if not self.calls:
            return TileWriteResult(0, 0, self.filtered)
        names = ",".join(v.name for v in self.views)
        with span("fs.online.write_events", views=names, events=len(self.offsets)):
            return self._send(progress)

    def _send(self, progress) -> TileWriteResult:
        applied, resend = _send(self.state, self.calls, progress)
        if resend:
            applied += _resend(
                self.state,
                self.views,
                self.fallbacks,
                set(resend),
                self.partitions,
                self.offsets,
                self.times,
                self.expire,
            )
        return TileWriteResult(applied, self.total - applied, self.filtered)


def prepare_events(
    state,
    views: Sequence[FeatureView],
    events: pa.Table,
    partitions: Sequence[str],
    offsets: np.ndarray,
    time_column: str,
    expire: bool = True,
) -> EventWrite:
    """Raw events (in offset order per partition) packed to be applied to each view's tiles, each at
    most once, in one pipeline for all views. ``expire=False`` keeps keys whose tiles are all in the past
    (replays).

    The events are pre-aggregated here, per (entity, Kafka partition) and tile, with numpy
    (``fs_platform.aggregation.tile_records.partials``) into one packed block per (entity, partition); the
    script merges a block if all its offsets are above the partition's mark, skips it if none is. A
    block straddling the mark (a replay that starts inside it) is rare: those entities are then sent
    again event by event."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if not events.num_rows:
        return EventWrite(state, views, [], {}, partitions, offsets, np.empty(0, np.int64), expire, 0, 0)
    times = arrow_epoch_micros(events.column(time_column))
    if times.null_count:
        raise OnlineWriteError(f"events have a null {time_column}")
    times = times.to_numpy(zero_copy_only=False)
    parts = pc.dictionary_encode(pa.array(partitions, pa.string()))
    part_names = parts.dictionary.to_pylist()
    bad = [p for p in part_names if not p or "=" in p or ";" in p]
    if bad:  # the script stores the marks as "<partition>=<offset>;"
        raise OnlineWriteError(f"partition names must be non-empty without '=' or ';': {bad[0]!r}")
    part_codes = parts.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    calls, fallbacks = [], {}
    total = filtered = 0
    compiled = [_compiled(view.tags[TAG]) for view in views]
    inputs = inputs_of_views([spec for spec, _ in compiled], events)
    for view, (spec, head), (keep, values) in zip(views, compiled, inputs, strict=True):
        read = ViewRead(state.layout, view, state.codec(view), [])
        rows = np.flatnonzero(keep)
        filtered += events.num_rows - len(rows)
        total += len(rows)
        if not len(rows):
            continue
        kept = events if len(rows) == events.num_rows else events.take(pa.array(rows))
        names, entity = _entity_codes(state, view, read, kept)
        blocks, group = np.unique(entity * len(part_names) + part_codes[rows], return_inverse=True)
        group = group.reshape(-1)
        packed = _blocks(spec, group, len(blocks), times[rows], values[rows], offsets[rows])
        entity_of, part_of = np.divmod(blocks, len(part_names))
        if len(blocks) < 2 or bool((entity_of[1:] != entity_of[:-1]).all()):  # one block per entity (usual)
            per_key = [
                (names[e], [1, part_names[p], data])
                for e, p, data in zip(entity_of.tolist(), part_of.tolist(), packed, strict=True)
            ]
        else:
            per_key = []
            for e, p, data in zip(entity_of.tolist(), part_of.tolist(), packed, strict=True):
                if not per_key or per_key[-1][0] != names[e]:  # sorted by entity: a key's blocks are adjacent
                    per_key.append((names[e], [0]))
                items = per_key[-1][1]
                items[0] += 1
                items += (part_names[p], data)
        call_head = [*head[:1], "b" if expire else "B", *head[2:]]
        calls += _calls(state, call_head, per_key)
        fallbacks[view.name] = (spec, names, entity, rows, values)
    return EventWrite(state, views, calls, fallbacks, partitions, offsets, times, expire, total, filtered)


def write_events(
    state,
    views: Sequence[FeatureView],
    events: pa.Table,
    partitions: Sequence[str],
    offsets: np.ndarray,
    time_column: str,
    expire: bool = True,
    progress=None,
) -> TileWriteResult:
    """``prepare_events`` then send; ``progress()`` after each round trip."""
    return prepare_events(state, views, events, partitions, offsets, time_column, expire).send(progress)


def _resend(state, views, fallbacks, keys_to_send: set[str], partitions, offsets, times, expire) -> int:
    """The entities whose block straddled a partition's mark, again with one block per event: the
    script then decides event by event (offsets at or below the mark are skipped)."""
    calls = []
    for view in views:
        if view.name not in fallbacks:
            continue
        spec, names, entity, rows, values = fallbacks[view.name]
        head = program(spec)
        head[1] = "b" if expire else "B"
        send = np.array([names[e] in keys_to_send for e in entity.tolist()], dtype=bool)
        picked = np.flatnonzero(send)  # in row order: offset order per partition
        if not len(picked):
            continue
        r = rows[picked]
        packed = _blocks(spec, np.arange(len(picked)), len(picked), times[r], values[r], offsets[r])
        per_key: dict[str, list] = {}
        for j, data in zip(picked.tolist(), packed, strict=True):
            items = per_key.setdefault(names[entity[j]], [0])
            items[0] += 1
            items += (partitions[rows[j]], data)
        calls += _calls(state, head, list(per_key.items()))
    applied, _ = _send(state, calls)
    return applied


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
    names, entity = _entity_codes(state, view, read, tiles)
    for key, rows in _group([names[e] for e in entity.tolist()]).items():
        items = [str(len(rows))]
        for i in rows:
            items += [tags[i], str(index[i]), records[i]]
        per_key.append((key, items))
    applied, _ = _send(state, _calls(state, head, per_key))
    return TileWriteResult(applied, tiles.num_rows - applied)
