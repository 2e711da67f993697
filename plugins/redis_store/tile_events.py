"""Raw stream events applied to aggregation tiles (the Kafka ingestor's and the Flink job's write): each
event applied at most once per view, by its ``topic/partition`` and offset (tiles.lua mode b; the script
and the key layout are in ``tile_store``).

The events are pre-aggregated with numpy per (entity, Kafka partition) and tile into one packed block per
(entity, partition); the script merges a block if all its offsets are above the partition's mark, skips it
if none is, and asks for the rare block that straddles the mark (a replay starting inside it) to be sent
again event by event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView

from fs_platform.aggregation.spec import TAG, AggregationSpec
from fs_platform.aggregation.tile_records import inputs_of_views, partials
from fs_platform.errors import OnlineWriteError
from fs_platform.observability import span
from fs_platform.plugins.redis_store.reader import ViewRead
from fs_platform.plugins.redis_store.tile_store import (
    TileWriteResult,
    compiled,
    entity_codes,
    script_calls,
    send_calls,
)
from fs_platform.timeutil import arrow_epoch_micros


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
    fallbacks: dict  # view name -> (spec, script head, key names, entity per row, rows, values): a resend
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
        applied, resend = send_calls(self.state, self.calls, progress)
        if resend:
            applied += self._resend(set(resend))
        return TileWriteResult(applied, self.total - applied, self.filtered)

    def _resend(self, keys_to_send: set[str]) -> int:
        """The entities whose block straddled a partition's mark, again with one block per event: the
        script then decides event by event (offsets at or below the mark are skipped)."""
        calls = []
        for spec, head, names, entity, rows, values in self.fallbacks.values():
            send = np.array([names[e] in keys_to_send for e in entity.tolist()], dtype=bool)
            picked = np.flatnonzero(send)  # in row order: offset order per partition
            if not len(picked):
                continue
            r = rows[picked]
            packed = _blocks(
                spec, np.arange(len(picked)), len(picked), self.times[r], values[r], self.offsets[r]
            )
            per_key: dict[str, list] = {}
            for j, data in zip(picked.tolist(), packed, strict=True):
                items = per_key.setdefault(names[entity[j]], [0])
                items[0] += 1
                items += (self.partitions[rows[j]], data)
            calls += script_calls(self.state, head, list(per_key.items()))
        applied, _ = send_calls(self.state, calls)
        return applied


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
    most once, in one pipeline for all views (see the module's docstring). ``expire=False`` keeps keys
    whose tiles are all in the past (replays)."""
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
    programs = [compiled(view.tags[TAG]) for view in views]
    inputs = inputs_of_views([spec for spec, _ in programs], events)
    for view, (spec, head), (keep, values) in zip(views, programs, inputs, strict=True):
        read = ViewRead(state.layout, view, state.codec(view), [])
        rows = np.flatnonzero(keep)
        filtered += events.num_rows - len(rows)
        total += len(rows)
        if not len(rows):
            continue
        kept = events if len(rows) == events.num_rows else events.take(pa.array(rows))
        names, entity = entity_codes(state, view, read, kept)
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
        calls += script_calls(state, call_head, per_key)
        fallbacks[view.name] = (spec, call_head, names, entity, rows, values)
    return EventWrite(state, views, calls, fallbacks, partitions, offsets, times, expire, total, filtered)
