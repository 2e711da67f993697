"""Tiles: the partial aggregates both engines keep, and the request-time merge (pure Python/numpy).

A tile is one record of float64 slots (``layout(spec)[i] = (kind, input)``): ``n`` count, ``s`` sum,
``q`` sum of squared deviations from the tile's mean ("M2": stable, unlike a sum of squares, for values
far from zero or all equal), ``m`` min, ``M`` max, ``t``/``l`` time and value of the latest input, ``h``
the HyperLogLog registers of an input (``sketch.WORDS`` consecutive slots). An empty tile is ``EMPTY``
per kind (0, 0, 0, +inf, -inf, -inf, nan, 0). Slot 0 is always the count of events
(``("n", -1)``): a batch rewrite of a tile compares it (see tiles.lua).

``Merger`` turns the tiles of ``[tile(t) - w/g, tile(t)]`` into feature values at request time ``t``:
the Redis store's read path calls it, and Spark's batch retrieval (plugins/delta/aggregation_partials.py)
applies the same formulas (``stddev`` merges the tiles' n, s and M2 exactly; count and sum of nothing are
0; the rest null). Raw events become tile records in ``fs_platform.aggregation.tile_records``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from fs_platform.aggregation import sketch
from fs_platform.aggregation.spec import EMPTY, AggregationSpec


def layout(spec: AggregationSpec) -> tuple[tuple[str, int], ...]:
    """The slots of a tile record: the count of events first, then the spec's (a sketch ``("h", i)``
    takes ``sketch.WORDS`` consecutive slots)."""
    out = [("n", -1)]
    for slot in spec.slots:
        if slot != ("n", -1):
            out += [slot] * (sketch.WORDS if slot[0] == "h" else 1)
    return tuple(out)


def empty_record(spec: AggregationSpec) -> bytes:
    return struct.pack(f"<{len(layout(spec))}d", *[EMPTY[k] for k, _ in layout(spec)])


def tile_index(time_us: int, tile_us: int) -> int:
    return time_us // tile_us


class Merger:
    """Compiled request-time merge of one spec (built once per view, reused for every read).

    The stored form (tiles.lua): a header (the layout fingerprint, the newest tile index per tile
    size), then per tile size a ring of ``tiles + 1`` records ``[index, slots...]`` (then the writers'
    offset marks, which reads ignore);
    tile ``k`` sits at ring position ``k mod ring`` and is valid only if the record's index is ``k``. A read
    at ``now`` takes, per tile size, the ring positions of ``[tile(now) - tiles, tile(now)]`` newest first
    (the same for every entity), masks records holding other tiles, and reduces each feature's newest
    ``w/g + 1`` tiles, for all entities of the request at once (one running sum serves every window of
    a tile size for count, sum and mean)."""

    def __init__(self, spec: AggregationSpec):
        self.spec = spec
        self.slots = layout(spec)
        self.width = len(self.slots) + 1
        self.rings = [g.tiles + 1 for g in spec.granularities]
        self.bases = np.cumsum([0, *self.rings])[:-1].tolist()
        self.records = sum(self.rings)
        self.head = 1 + len(self.rings)  # the fingerprint and the newest tile index per tile size
        self.fingerprint = struct.pack("<d", float(spec.fingerprint))
        empty = [float("-inf"), *[EMPTY[k] for k, _ in self.slots]]
        self.empty = self.fingerprint + struct.pack(
            f"<{self.head - 1 + self.width * self.records}d",
            *([float("-inf")] * (self.head - 1)),
            *(empty * self.records),
        )
        self._unpack = struct.Struct(f"<{len(self.empty) // 8}d").unpack_from
        self._offsets_at: list[tuple[int, list[int], list[float]] | None] = [None] * len(self.rings)
        index: dict[tuple[str, int], int] = {}  # a slot's (first) column
        for i, slot in enumerate(self.slots):
            index.setdefault(slot, i)
        self.plan = []  # per feature: (function, granularity, tiles, slot columns)
        for f in spec.features:
            kinds = {
                "count": "n",
                "sum": "s",
                "mean": "ns",
                "min": "m",
                "max": "M",
                "last": "tl",
                "stddev": "nsq",
                "approx_count_distinct": "h",
            }[f.function]
            self.plan.append(
                (
                    f.function,
                    spec.granularity(f.window.tile_us),
                    f.window.tiles,
                    [1 + index[(k, f.input)] for k in kinds],
                )
            )
        # Columns that add up (counts and sums; finite, so a mask can multiply them)
        self.summable = [1 + i for i, (k, _) in enumerate(self.slots) if k in ("n", "s")]
        self.summable_at = {c: j for j, c in enumerate(self.summable)}

    def values(self, blobs: Sequence[bytes | None], now_us: int) -> list[list]:
        """Feature values (``spec.features`` order, one list each) for the entities whose stored tiles
        are ``blobs`` (None: nothing stored; anything shorter or of another fingerprint: another layout,
        or a row of the view before it aggregated: no tiles), as of ``now_us``."""
        if not blobs:
            return [[] for _ in self.plan]
        if len(blobs) == 1:  # the hot single-entity read: plain Python beats numpy's per-call overhead
            return [[v] for v in self._one(blobs[0], now_us)]
        size, fp, empty = len(self.empty), self.fingerprint, self.empty
        raw = b"".join(
            [b[:size] if b is not None and len(b) >= size and b[:8] == fp else empty for b in blobs]
        )
        data = np.frombuffer(raw, dtype="<f8").reshape(len(blobs), -1)[:, self.head :]
        data = data.reshape(len(blobs), self.records, self.width)
        windows = []  # per tile size: records newest first, which hold the tile asked, running sums
        for g, ring, base in zip(self.spec.granularities, self.rings, self.bases, strict=True):
            kt = now_us // g.tile_us
            wanted = np.arange(kt, kt - g.tiles - 1, -1, dtype=np.int64)
            block = data[:, base + wanted % ring, :]
            valid = block[:, :, 0] == wanted.astype(np.float64)
            windows.append((block, valid, None))
        out, totals = [], {}
        for function, gi, tiles, cols in self.plan:
            block, valid, _ = windows[gi]
            if function in ("count", "sum", "mean"):
                total = totals.get((gi, tiles))
                if total is None:  # the summable columns over the newest tiles + 1 tiles, masked
                    mask = valid[:, : tiles + 1].astype(np.float64)
                    total = np.einsum("ij,ijk->ik", mask, block[:, : tiles + 1, self.summable])
                    totals[(gi, tiles)] = total
                out.append(_summed(function, total, [self.summable_at[c] for c in cols]))
            else:
                out.append(_finish(function, block[:, : tiles + 1, :], valid[:, : tiles + 1], cols))
        return out

    def _one(self, blob: bytes | None, now_us: int) -> list:
        """``values`` of one entity, in plain Python over the records of its windows (the records'
        offsets computed once per request tile, ``_offsets``; each window's valid records once)."""
        if blob is None or len(blob) < len(self.empty) or blob[:8] != self.fingerprint:
            blob = self.empty
        data = self._unpack(blob)  # the fixed-size part (the offset marks follow it)
        held = []  # per tile size: the offsets of the records holding the tiles asked (else -1), newest first
        for gi, g in enumerate(self.spec.granularities):
            offsets, indexes = self._offsets(gi, now_us // g.tile_us)
            held.append([at if data[at] == k else -1 for at, k in zip(offsets, indexes, strict=True)])
        out, windows = [], {}
        for function, gi, tiles, cols in self.plan:
            recs = windows.get((gi, tiles))
            if recs is None:
                recs = windows[(gi, tiles)] = [at for at in held[gi][: tiles + 1] if at >= 0]
            c0 = cols[0]
            if function == "count":
                out.append(int(sum([data[at + c0] for at in recs])))
            elif function == "sum":
                out.append(float(sum([data[at + c0] for at in recs])))
            elif function == "mean":
                n = sum([data[at + c0] for at in recs])
                c1 = cols[1]
                out.append(sum([data[at + c1] for at in recs]) / n if n > 0 else None)
            elif function == "approx_count_distinct":
                words = np.array([data[at + c0 : at + c0 + sketch.WORDS] for at in recs]).reshape(
                    -1, sketch.WORDS
                )
                out.append(_distinct(words[None], np.ones((1, len(recs)), dtype=bool))[0])
            elif function in ("min", "max"):
                pick = min if function == "min" else max
                v = pick((data[at + c0] for at in recs), default=math.inf if function == "min" else -math.inf)
                out.append(None if math.isinf(v) else v)
            elif function == "last":
                best = max(((data[at + c0], data[at + cols[1]]) for at in recs), default=(-math.inf, None))
                out.append(None if math.isinf(best[0]) else best[1])
            else:  # stddev: pooled M2 over the tiles
                tiles_ = [(data[at + c0], data[at + cols[1]], data[at + cols[2]]) for at in recs]
                n = sum(t[0] for t in tiles_)
                s = sum(t[1] for t in tiles_)
                mean = s / n if n > 0 else 0.0
                m2 = sum(q + k * (x / k - mean) ** 2 for k, x, q in tiles_ if k > 0)
                out.append(stddev(n, m2))
        return out

    def _offsets(self, gi: int, kt: int) -> tuple[list[int], list[float]]:
        """Tile size ``gi`` at request tile ``kt``: the offsets of the records of tiles ``kt, kt - 1, ...``
        and the index each must hold to be that tile (cached: the same for every read within a tile)."""
        hit = self._offsets_at[gi]
        if hit is None or hit[0] != kt:
            ring, base, tiles = self.rings[gi], self.bases[gi], self.spec.granularities[gi].tiles
            indexes = range(kt, kt - tiles - 1, -1)
            offsets = [self.head + (base + k % ring) * self.width for k in indexes]
            hit = self._offsets_at[gi] = (kt, offsets, [float(k) for k in indexes])
        return hit[1], hit[2]


def _summed(function: str, totals: np.ndarray, cols: list[int]) -> list:
    if function == "count":
        return [int(x) for x in totals[:, cols[0]].tolist()]
    if function == "sum":
        return totals[:, cols[0]].tolist()
    n, s = totals[:, cols[0]].tolist(), totals[:, cols[1]].tolist()
    return [b / a if a > 0 else None for a, b in zip(n, s, strict=True)]


def _total(block: np.ndarray, valid: np.ndarray, col: int) -> np.ndarray:
    return np.where(valid, block[:, :, col], 0.0).sum(axis=1)


def _floats(values: np.ndarray, present: np.ndarray) -> list:
    return [float(x) if ok else None for x, ok in zip(values.tolist(), present.tolist(), strict=True)]


def _distinct(words: np.ndarray, valid: np.ndarray) -> list[int]:
    """approx_count_distinct of (entities, tiles, sketch.WORDS) words, tiles masked by ``valid``."""
    registers = np.where(valid[:, :, None], sketch.unpack(words), 0).max(axis=1, initial=0)
    return sketch.estimate(registers).tolist()


def _finish(function: str, block: np.ndarray, valid: np.ndarray, cols: list[int]) -> list:
    if function == "approx_count_distinct":
        return _distinct(block[:, :, cols[0] : cols[0] + sketch.WORDS], valid)
    if function in ("min", "max"):
        fill = np.inf if function == "min" else -np.inf
        masked = np.where(valid, block[:, :, cols[0]], fill)
        v = masked.min(axis=1) if function == "min" else masked.max(axis=1)
        return _floats(v, np.isfinite(v))
    if function == "last":
        times = np.where(valid, block[:, :, cols[0]], -np.inf)
        best = times.max(axis=1)
        vals = np.where(times == best[:, None], block[:, :, cols[1]], -np.inf).max(axis=1)
        return _floats(vals, np.isfinite(best))
    # stddev. Pooled M2: each tile's M2 plus its count times its mean's squared distance from the mean.
    n = _total(block, valid, cols[0])
    s = _total(block, valid, cols[1])
    counts = np.where(valid, block[:, :, cols[0]], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, np.where(valid, block[:, :, cols[1]], 0.0) / counts, 0.0)
        overall = np.where(n > 0, s / n, 0.0)
    m2 = _total(block, valid, cols[2]) + (counts * (means - overall[:, None]) ** 2).sum(axis=1)
    return [stddev(a, b) for a, b in zip(n.tolist(), m2.tolist(), strict=True)]


def stddev(n: float, m2: float) -> float | None:
    """Sample standard deviation from the count and the pooled M2 (the formula Spark applies too)."""
    if n < 2:
        return None
    return math.sqrt(max(m2 / (n - 1), 0.0))
