"""Aggregation views in Redis: tiles written atomically per entity (tiles.lua), merged at read time.

One hash per (entity, aggregation view), under the same key as a plain view's row
(``<prefix>:<project>:{<keys>}:<view>``), so tenant prefixes, Cluster hash tags and view deletion
work unchanged. Writers:

* ``write_events``: the Kafka ingestor's raw events with their ``topic/partition`` and offset. Each
  event is applied once: a redelivered offset is a no-op, so replays after a crash add nothing.
* ``write_tiles``: tiles rebuilt by Spark from the raw Delta events (``fs materialize`` / backfill).

A read (``TileRead``) fetches, per entity, the tiles (one string field, ~1.5 KB for the example view)
with one HMGET (all entities and views in one pipelined round trip with the plain views' MGET) and
merges them for all entities at once (``fs.aggregation.tiles.Merger``): a 10-minute count decays
without new events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pyarrow as pa
import redis
from feast import FeatureView

from fs.aggregation.spec import AggregationSpec, spec_of
from fs.aggregation.tiles import Merger, event_inputs, layout
from fs.errors import OnlineWriteError
from fs.timeutil import arrow_epoch_micros
from plugins.redis_store.connection import translated
from plugins.redis_store.reader import PRESENT, ViewRead, ViewResult

TILES_LUA = resources.files("plugins.redis_store").joinpath("tiles.lua").read_text()
TILES_SHA = hashlib.sha1(TILES_LUA.encode()).hexdigest()
_KEYS_PER_PIPELINE = 500


class TileRead(ViewRead):
    """A compiled read of some features of an aggregation view."""

    def __init__(self, layout_, view: FeatureView, codec, features, join_key_map=None):
        super().__init__(layout_, view, codec, features, join_key_map)
        self.spec: AggregationSpec = spec_of(view)
        self.merger = Merger(self.spec)
        names = [f.name for f in self.spec.features]
        self.wanted = [names.index(f) for f in self.features]
        self.fingerprint = str(self.spec.fingerprint).encode()

    def fields(self, now_us: int) -> list[str]:
        return ["_fp", "t"]

    def result(self, replies: Sequence[list], now_us: int) -> ViewResult:
        """HMGET replies (one ``[fingerprint, tiles]`` per entity row) -> the requested features."""
        fp = self.fingerprint
        # another layout, or an error reply (a plain row under this key): no tiles
        blobs = [None if isinstance(reply, Exception) or reply[0] != fp else reply[1] for reply in replies]
        values = self.merger.values(blobs, now_us)
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
        return TileWriteResult(self.applied + other.applied, self.duplicate + other.duplicate,
                               self.filtered + other.filtered)


def _value(x: float) -> str:
    return "" if x != x else repr(float(x))


def _send(state, calls: list[tuple[str, list]]) -> int:
    """EVALSHA tiles.lua once per (key, argv), pipelined; the total applied."""
    applied = 0
    with translated(state.endpoint):
        for start in range(0, len(calls), _KEYS_PER_PIPELINE):
            chunk = calls[start : start + _KEYS_PER_PIPELINE]
            for attempt in (0, 1):
                try:
                    with state.client.pipeline(transaction=False) as pipe:
                        for key, argv in chunk:
                            pipe.execute_command("EVALSHA", TILES_SHA, 1, key, *argv)
                        applied += sum(pipe.execute())
                    break
                except redis.exceptions.NoScriptError:
                    if attempt:
                        raise
                    # first use on this server: calls that ran before the error were idempotent
                    state.client.script_load(TILES_LUA)
                except redis.exceptions.ResponseError as e:
                    raise OnlineWriteError(f"tile write failed: {e}") from e
    return applied


def _group(keys: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def _keys(state, view: FeatureView, read: ViewRead, table: pa.Table) -> list[str]:
    missing = [k for k in read.join_keys if k not in table.column_names]
    if missing:
        raise OnlineWriteError(f"events for {view.name!r} lack join key column(s) {', '.join(missing)}")
    columns = [table.column(k) for k in read.join_keys]
    if any(c.null_count for c in columns):
        raise OnlineWriteError(f"events for {view.name!r} have a null join key")
    return state.layout.arrow_keys(view.name, read.join_keys, read.key_types, read.tokens, columns)


def write_events(state, view: FeatureView, events: pa.Table, partitions: Sequence[str],
                 offsets: np.ndarray, time_column: str, expire: bool = True) -> TileWriteResult:
    """Apply raw events (in offset order per partition) to the view's tiles, each at most once.
    ``expire=False`` keeps keys whose tiles are all in the past (replays of history)."""
    spec = spec_of(view)
    read = TileRead(state.layout, view, state.codec(view), [])
    keep, values = event_inputs(spec, events)
    filtered = int((~keep).sum())
    if filtered:
        index = np.flatnonzero(keep)
        events = events.take(pa.array(index))
        partitions = [partitions[i] for i in index]
        offsets = offsets[index]
        values = values[index]
    if not events.num_rows:
        return TileWriteResult(filtered=filtered)
    times = arrow_epoch_micros(events.column(time_column))
    if times.null_count:
        raise OnlineWriteError(f"events for {view.name!r} have a null {time_column}")
    times = times.to_numpy(zero_copy_only=False).tolist()
    offsets = np.asarray(offsets).tolist()
    text = [[_value(x) for x in row] for row in values.tolist()]
    head = program(spec)
    head[1] = "e" if expire else "E"
    calls = []
    for key, rows in _group(_keys(state, view, read, events)).items():
        argv = [*head, str(len(rows))]
        for i in rows:
            argv += [partitions[i], str(offsets[i]), str(times[i]), *text[i]]
        calls.append((key, argv))
    applied = _send(state, calls)
    return TileWriteResult(applied, events.num_rows - applied, filtered)


def write_tiles(state, view: FeatureView, tiles: pa.Table) -> TileWriteResult:
    """Write tiles rebuilt by Spark (``plugins.delta.aggregation.tiles``: join keys, ``tag``,
    ``tile``, ``s0..``) into the view's hashes; a stored tile that counted more events stays."""
    spec = spec_of(view)
    read = TileRead(state.layout, view, state.codec(view), [])
    width = len(layout(spec))
    slots = np.column_stack([tiles.column(f"s{i}").to_numpy(zero_copy_only=False).astype("<f8")
                             for i in range(width)]) if tiles.num_rows else np.empty((0, width))
    records = [row.tobytes() for row in np.ascontiguousarray(slots, dtype="<f8")]
    tags = tiles.column("tag").to_pylist()
    index = tiles.column("tile").to_pylist()
    head = program(spec)
    head[1] = "t"
    calls = []
    for key, rows in _group(_keys(state, view, read, tiles)).items():
        argv = [*head, str(len(rows))]
        for i in rows:
            argv += [tags[i], str(index[i]), records[i]]
        calls.append((key, argv))
    applied = _send(state, calls)
    return TileWriteResult(applied, tiles.num_rows - applied)

