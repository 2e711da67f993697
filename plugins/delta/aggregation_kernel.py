"""The ``mapInArrow`` kernel of :func:`fs_platform.plugins.delta.aggregation_as_of.as_of` (numpy only):
one hash partition of events and request rows in, each request's feature values out.

Per partition it sorts by (key, time, events before requests) and

0. drops the events that no request can see (more than the longest window before the next request
   of their key: one pass, the sparse keys' old history goes here);
1. cuts the rows into *atoms*: consecutive rows of one key and one tile of the gcd of the tile sizes,
   up to and including a request row; atom partials are ``reduceat`` sums / minima / maxima (no
   per-event Python). Each tile size is a multiple of the gcd, so every granularity below works on
   atoms, not rows;
2. per tile size, merges atoms into *runs* (one (key, tile) up to a request) and scans the runs of the
   (key, tile) segments holding a request (a segmented scan: running sums for counts, Hillis-Steele,
   log2(runs per tile) vectorised steps, for the rest): the scan at a request's run is its *head* (the
   events of its own tile up to ``t``); every segment's total is its tile;
3. merges the ``n = w/g`` tiles before the request's (the *tail*) in O(1) per request whatever ``n``
   (van Herk / Gil-Werman): the tiles some tail reaches are cut into aligned blocks of ``n``; a forward
   scan gives prefixes and a backward scan suffixes within each block, and ``[kt - n, kt - 1]`` is one
   block's suffix plus the next block's prefix, looked up with ``searchsorted``;

and the request's value is ``merge(tail, head)``. Every step is linear in the partition (plus the
sort), so a key with millions of events costs what its events cost, never events x requests. Sums are
reduced over atoms, runs and tiles and scanned pairwise; ``stddev`` merges (n, sum, M2) by Chan et al.
(as the online read pools tile M2s). No running sum over a whole history is ever subtracted, so no
cancellation.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fs_platform.aggregation import sketch
from fs_platform.aggregation.spec import AggregationSpec
from fs_platform.plugins.delta import aggregation_codes, aggregation_partials
from fs_platform.plugins.delta.aggregation_codes import key_ids, reached_tiles, sort_order, tile_codes
from fs_platform.plugins.delta.aggregation_partials import (
    Partials,
    changes,
    combine,
    empty_partials,
    finish,
    pick,
    reduce,
    row_partials,
    scan,
    take,
)

KEY = "__fs_k{}"  # key columns inside the kernel
US = "__fs_us"  # event / request time, epoch microseconds
REQ = "__fs_req"  # true on request rows
INPUT = "__fs_x{}"  # input values (double)


def pickle_by_value(*modules: ModuleType) -> None:
    """Ship the kernel's code with the query, so a remote Spark's Python workers need only numpy and
    pyarrow, not fs (cloudpickle would otherwise pickle ``Kernel`` as an import of this module, and the
    modules and sketch it calls). ``modules``: those of other ``mapInArrow`` functions."""
    from pyspark import cloudpickle

    for module in (sys.modules[__name__], aggregation_codes, aggregation_partials, sketch, *modules):
        cloudpickle.register_pickle_by_value(module)


@dataclass(frozen=True)
class KernelFeature:
    function: str
    input: int  # -1: events
    granularity: int  # index into KernelPlan.tile_us
    tiles: int  # w / g


@dataclass(frozen=True)
class KernelPlan:
    """Plain data (no fs objects), so the kernel pickles by value for a remote Spark's Python workers."""

    key_count: int
    input_count: int
    tile_us: tuple[int, ...]
    slots: tuple[tuple[tuple[str, int], ...], ...]  # per granularity: the (kind, input) partials it needs
    features: tuple[KernelFeature, ...]
    outputs: tuple[str, ...]

    @staticmethod
    def build(spec: AggregationSpec, features: list, outputs: list[str]) -> KernelPlan:
        sizes = sorted({f.window.tile_us for f in features})
        slots: list[list[tuple[str, int]]] = [[] for _ in sizes]
        kinds = {
            "count": "n",
            "sum": "s",
            "mean": "ns",
            "min": "m",
            "max": "M",
            "last": "tl",
            "stddev": "nsq",
            "approx_count_distinct": "h",
        }
        planned = []
        for f in features:
            gi = sizes.index(f.window.tile_us)
            for kind in kinds[f.function]:
                if (kind, f.input) not in slots[gi]:
                    slots[gi].append((kind, f.input))
            planned.append(KernelFeature(f.function, f.input, gi, f.window.tiles))
        return KernelPlan(
            key_count=len(spec.join_keys),
            input_count=len(spec.inputs),
            tile_us=tuple(sizes),
            slots=tuple(tuple(s) for s in slots),
            features=tuple(planned),
            outputs=tuple(outputs),
        )

    @property
    def named(self) -> list[tuple[KernelFeature, str]]:
        return list(zip(self.features, self.outputs, strict=True))


class Kernel:
    """``mapInArrow`` function: one hash partition of events + request rows in, request rows with
    their feature values out (see the module docstring for the algorithm)."""

    def __init__(self, plan: KernelPlan):
        self.plan = plan

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        table = pa.Table.from_batches(batches)
        if not pc.any(table[REQ]).as_py():
            return
        yield from self.compute(table).to_batches()

    def compute(self, table: pa.Table) -> pa.Table:
        plan = self.plan
        keys = [table[KEY.format(i)] for i in range(plan.key_count)]
        kid = key_ids(keys)
        us = table[US].to_numpy()
        req = table[REQ].to_numpy(zero_copy_only=False)
        order = sort_order(kid, us, req)
        kid, us, req = kid[order], us[order], req[order]
        # Only events within the longest window before a request of their key can count: drop the rest.
        reach = max(
            f.tiles * plan.tile_us[f.granularity] + plan.tile_us[f.granularity] for f in plan.features
        )
        keep = _near_requests(kid, us, req, reach)
        rows = order[keep]
        kid, us, req = kid[keep], us[keep], req[keep]
        xs = [
            _finite(table[INPUT.format(i)].to_numpy(zero_copy_only=False)[rows])
            for i in range(plan.input_count)
        ]
        at = np.flatnonzero(req)  # request rows, in sorted order

        # Atoms: rows of one (key, tile of the gcd of the tile sizes) up to and including a request row.
        # Every granularity's runs are unions of consecutive atoms, so rows are reduced once.
        base = math.gcd(*plan.tile_us)
        base_tile = np.floor_divide(us, base)
        new_atom = changes(kid, base_tile)
        new_atom[1:] |= req[:-1]
        atom_of_row = np.cumsum(new_atom) - 1
        starts = np.flatnonzero(new_atom)
        every = tuple(dict.fromkeys(slot for slots in plan.slots for slot in slots))
        atoms = reduce(row_partials(every, req, us, xs), starts, atom_of_row)
        atom_kid = np.cumsum(changes(kid[starts])) - 1  # dense key numbers: small lookup codes
        atom_tile = base_tile[starts]
        atom_ends_request = req[np.append(starts[1:], len(us)) - 1]
        request_atom = atom_of_row[at]

        values: dict[tuple[int, int], Partials] = {}
        for gi, g in enumerate(plan.tile_us):
            parts = {slot: atoms[slot] for slot in plan.slots[gi]}
            sizes = sorted({f.tiles for f in plan.features if f.granularity == gi})
            tile = np.floor_divide(atom_tile, g // base)
            merged = _granularity(parts, atom_kid, tile, atom_ends_request, request_atom, sizes)
            for n, partials in merged.items():
                values[(gi, n)] = partials
        columns = {KEY.format(i): keys[i].take(pa.array(rows[at])) for i in range(plan.key_count)}
        columns[US] = pa.array(us[at])
        for f, out in plan.named:
            columns[out] = finish(f.function, f.input, values[(f.granularity, f.tiles)])
        return pa.table(columns)


def _near_requests(kid: np.ndarray, us: np.ndarray, req: np.ndarray, reach: int) -> np.ndarray:
    """Rows to keep (sorted by key, time): requests, and events less than ``reach`` before the next
    request of their key."""
    requests = np.flatnonzero(req)
    if not len(requests):
        return req.copy()
    before = np.cumsum(req) - req  # requests before each row: the next one at or after it is requests[before]
    found = before < len(requests)
    target = requests[np.minimum(before, len(requests) - 1)]
    return req | (found & (kid[target] == kid) & (us[target] - us < reach))


def _finite(values: np.ndarray) -> np.ndarray:
    """Inputs as float64 with NaN for null (Arrow nulls arrive as NaN) and non-finite values."""
    values = values.astype(np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _granularity(
    atoms: Partials, kid, tile, ends_request, request_atom, sizes: list[int]
) -> dict[int, Partials]:
    """For one tile size: {n: merged partials per request of its tiles [kt - n, kt - 1] and the
    events of its own tile up to its time}. Inputs are atoms (see ``Kernel.compute``) with their
    (dense) key number, tile index at this size and whether they end with a request."""
    new_segment = changes(kid, tile)
    new_run = new_segment.copy()
    new_run[1:] |= ends_request[:-1]
    run_of_atom = np.cumsum(new_run) - 1
    runs = reduce(atoms, np.flatnonzero(new_run), run_of_atom)
    segment_of_atom = np.cumsum(new_segment) - 1
    segment_of_run = segment_of_atom[new_run]
    request_segment = segment_of_atom[request_atom]  # sorted: requests are in row order

    # Head: scan the runs of the (key, tile) segments holding a request; a request's run is its head.
    asked = np.zeros(int(segment_of_atom[-1]) + 1 if len(segment_of_atom) else 0, dtype=bool)
    asked[request_segment] = True
    chosen = np.flatnonzero(asked[segment_of_run])
    scanned = scan(take(runs, chosen), segment_of_run[chosen])
    head = take(scanned, np.searchsorted(chosen, run_of_atom[request_atom]))

    # Tiles: each segment's total; only those some request's tail reaches are kept. Requests of one
    # segment share their tail: merge once per segment holding a request.
    first_run = np.flatnonzero(changes(segment_of_run))
    totals = reduce(runs, first_run, segment_of_run)
    first_atom = np.flatnonzero(new_segment)
    tile_kid, tile_index = kid[first_atom], tile[first_atom]
    first_request = changes(request_segment)
    wanted = request_segment[first_request]
    where = np.cumsum(first_request) - 1
    out = {}
    for n in sizes:
        near = reached_tiles(tile_kid, tile_index, tile_kid[wanted], tile_index[wanted], n)
        tail = _tail(
            take(totals, near), tile_kid[near], tile_index[near], tile_kid[wanted], tile_index[wanted], n
        )
        out[n] = combine(take(tail, where), head)
    return out


def _tail(totals: Partials, tile_kid, tile_index, request_kid, request_tile, n: int) -> Partials:
    """Merge of each request's tiles ``[kt - n, kt - 1]`` (van Herk / Gil-Werman over aligned blocks
    of ``n`` tiles): suffix of the block holding ``kt - n`` plus prefix of the block holding ``kt - 1``."""
    first, last = request_tile - n, request_tile - 1
    block = np.floor_divide(tile_index, n)
    block_id = np.cumsum(changes(tile_kid, block)) - 1
    prefix = scan(totals, block_id)
    suffix = scan(totals, block_id, reverse=True)
    code, first_code, last_code = tile_codes(tile_kid, tile_index, request_kid, first, last)
    size = len(code)
    empty = empty_partials(totals, len(request_kid))
    if not size:
        return empty
    # Suffix: the first tile >= kt - n, if it is in kt - n's block.
    s = np.searchsorted(code, first_code, side="left")
    s_ok = s < size
    s = np.minimum(s, size - 1)
    first_block = np.floor_divide(first, n)
    s_ok &= (tile_kid[s] == request_kid) & (block[s] == first_block)
    # Prefix: the last tile <= kt - 1, if it is in kt - 1's block and that block is not kt - n's.
    p = np.searchsorted(code, last_code, side="right") - 1
    p_ok = p >= 0
    p = np.maximum(p, 0)
    last_block = np.floor_divide(last, n)
    p_ok &= (tile_kid[p] == request_kid) & (block[p] == last_block) & (last_block != first_block)
    return combine(pick(suffix, s, s_ok, empty), pick(prefix, p, p_ok, empty))
