"""Tiles: the partial aggregates both engines keep, and the request-time merge (pure Python/numpy).

A tile is one record of ``len(spec.slots)`` float64 values (``spec.slots[i] = (kind, input)``):
``n`` count, ``s`` sum, ``q`` sum of squares, ``m`` min, ``M`` max, ``t``/``l`` time and value of the
latest input. An empty tile is ``EMPTY`` per kind (0, 0, 0, +inf, -inf, -inf, nan). Slot 0 is always
the count of events (``("n", -1)``): a batch rewrite of a tile compares it (see tiles.lua).

``merge`` turns the tiles of ``[tile(t) - k, tile(t)]`` into feature values at request time ``t``:
the Redis store's read path calls it, and Spark's batch retrieval (plugins/delta/aggregation.py) applies
the same formulas (stddev from n, s, q; count and sum of nothing are 0; the rest null).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fs.aggregation.spec import EMPTY, AggregationSpec


def layout(spec: AggregationSpec) -> tuple[tuple[str, int], ...]:
    """The slots of a tile record: the count of events first, then the spec's."""
    return (("n", -1), *[s for s in spec.slots if s != ("n", -1)])


def empty_record(spec: AggregationSpec) -> bytes:
    return struct.pack(f"<{len(layout(spec))}d", *[EMPTY[k] for k, _ in layout(spec)])


def tile_index(time_us: int, tile_us: int) -> int:
    return time_us // tile_us


def field_name(tag: str, index: int) -> str:
    """Hash field of one tile in Redis: ``<tile seconds>:<tile index>``."""
    return f"{tag}:{index}"


def read_fields(spec: AggregationSpec, now_us: int) -> list[str]:
    """The tile fields a read at ``now_us`` needs, granularity by granularity, oldest first."""
    out = []
    for g in spec.granularities:
        kt = now_us // g.tile_us
        out.extend(field_name(g.tag, i) for i in range(kt - g.tiles, kt + 1))
    return out


class Merger:
    """Compiled request-time merge of one spec (built once per view, reused for every read)."""

    def __init__(self, spec: AggregationSpec):
        self.spec = spec
        self.slots = layout(spec)
        self.width = len(self.slots)
        self.empty = empty_record(spec)
        self.blocks = [g.tiles + 1 for g in spec.granularities]  # records per granularity, oldest first
        offsets = np.cumsum([0, *self.blocks])
        index = {s: i for i, s in enumerate(self.slots)}
        self.plan = []  # per feature: (function, first record, end record, slot indices)
        for f in spec.features:
            gi = spec.granularity(f.window.tile_us)
            end = int(offsets[gi + 1])
            first = end - (f.window.tiles + 1)
            kinds = {"count": "n", "sum": "s", "mean": "ns", "min": "m", "max": "M", "last": "tl",
                     "stddev": "nsq"}[f.function]
            self.plan.append((f.function, first, end, [index[(k, f.input)] for k in kinds]))

    def records(self, replies: Sequence[bytes | None]) -> np.ndarray:
        """HMGET replies (``read_fields`` order) -> (tiles, slots) float64 array."""
        empty = self.empty
        raw = b"".join([empty if r is None or len(r) != len(empty) else r for r in replies])
        return np.frombuffer(raw, dtype="<f8").reshape(-1, self.width)

    def values(self, records: np.ndarray) -> list:
        """Feature values (spec.features order) from the records of one entity."""
        out = []
        for function, first, end, slots in self.plan:
            block = records[first:end]
            out.append(_finish(function, block, slots))
        return out


def _finish(function: str, block: np.ndarray, slots: list[int]):
    if function == "count":
        return int(block[:, slots[0]].sum())
    if function == "sum":
        return float(block[:, slots[0]].sum())
    if function == "min":
        v = float(block[:, slots[0]].min())
        return None if math.isinf(v) else v
    if function == "max":
        v = float(block[:, slots[0]].max())
        return None if math.isinf(v) else v
    if function == "last":
        times, vals = block[:, slots[0]], block[:, slots[1]]
        best = float(times.max())
        if math.isinf(best):
            return None
        return float(vals[times == best].max())
    n = float(block[:, slots[0]].sum())
    s = float(block[:, slots[1]].sum())
    if function == "mean":
        return None if n == 0 else s / n
    q = float(block[:, slots[2]].sum())
    return stddev(n, s, q)


def stddev(n: float, s: float, q: float) -> float | None:
    """Sample standard deviation from count, sum and sum of squares (the formula Spark applies too)."""
    if n < 2:
        return None
    return math.sqrt(max((q - s * s / n) / (n - 1), 0.0))


def event_inputs(spec: AggregationSpec, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """For raw events as Arrow: which rows pass ``where`` (bool array) and each input's value per row
    as float64 (rows x inputs; NaN where null or not finite; booleans as 0/1)."""
    n = table.num_rows
    if spec.where is not None:
        mask = _evaluate(table, spec.where)
        keep = pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)
    else:
        keep = np.ones(n, dtype=bool)
    values = np.empty((n, len(spec.inputs)), dtype=np.float64)
    for i, expr in enumerate(spec.inputs):
        arr = _evaluate(table, expr)
        if pa.types.is_boolean(arr.type):
            arr = arr.cast(pa.float64())
        v = pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype(np.float64)
        v[~np.isfinite(v)] = np.nan
        values[:, i] = v
    return keep, values


def _evaluate(table: pa.Table, expr) -> pa.Array:
    import pyarrow.dataset as ds

    result = ds.dataset(table).to_table(columns={"v": expr.to_arrow()})["v"]
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result
