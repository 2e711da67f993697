"""(key, time) and (key, tile) as single sortable int64 codes for the aggregation kernel
(:mod:`fs_platform.plugins.delta.aggregation_kernel`): key ids, the row order, tile lookups. Past
``_CODE_LIMIT`` each takes a slower fallback with the same result.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CODE_LIMIT = 2**62  # combined (key, time or tile) codes must stay below this; past it, slower fallbacks


def key_ids(columns: list[pa.ChunkedArray]) -> np.ndarray:
    """One int64 per row, equal for equal keys (all columns): a single integer key as it is, else
    dictionary codes (combined across columns)."""
    if len(columns) == 1 and pa.types.is_integer(columns[0].type) and columns[0].null_count == 0:
        return columns[0].to_numpy().astype(np.int64, copy=False)
    kid: np.ndarray | None = None
    span = 1
    for column in columns:
        codes, size = _dense(column)
        if kid is None:
            kid, span = codes, size
        else:
            if span * size >= _CODE_LIMIT:
                kid, span = _dense(pa.array(kid))
            kid, span = kid * size + codes, span * size
    assert kid is not None
    return kid


def _dense(column) -> tuple[np.ndarray, int]:
    """(codes 0..size-1, size): equal values, equal codes (hash-based, no sort)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), max(len(encoded.dictionary), 1)


def sort_order(kid: np.ndarray, us: np.ndarray, req: np.ndarray) -> np.ndarray:
    """Row order by (key, time, events before requests): a request sees the events of its instant."""
    if not len(us):
        return np.arange(0)
    low = int(us.min())
    width = (int(us.max()) - low + 1) * 2
    time = us - low
    time *= 2
    time += req
    k_low = int(kid.min())
    if (int(kid.max()) - k_low + 1) * width < _CODE_LIMIT:
        code = kid - k_low
    else:
        code, _ = _dense(pa.array(kid))
    if (int(code.max()) + 1) * width < _CODE_LIMIT:
        code *= width
        code += time
        return np.argsort(code)
    by_time = np.argsort(time, kind="stable")
    return by_time[np.argsort(code[by_time], kind="stable")]


def reached_tiles(tile_kid, tile_index, request_kid, request_tile, n: int) -> np.ndarray:
    """Indices of the tiles some request's tail ``[kt - n, kt - 1]`` covers (both lists sorted)."""
    if not len(tile_index) or not len(request_tile):
        return np.arange(0)
    low = min(int(tile_index.min()), int(request_tile.min())) - 1
    width = max(int(tile_index.max()), int(request_tile.max())) - low + n + 1
    if (int(max(tile_kid.max(), request_kid.max())) + 1) * width >= _CODE_LIMIT:
        return np.arange(len(tile_index))  # codes would overflow: keep every tile (correct, slower)
    codes = request_kid * width + (request_tile - low)
    first = tile_kid * width + (tile_index - low) + 1
    j = np.searchsorted(codes, first)
    reached = j < len(codes)
    reached[reached] = codes[j[reached]] <= first[reached] + n - 1
    return np.flatnonzero(reached)


def tile_codes(tile_kid, tile_index, request_kid, first, last):
    """One sortable int64 per (key id, tile): tile list codes, and the requests' first/last codes."""
    low = min(int(tile_index.min()) if len(tile_index) else 0, int(first.min()) if len(first) else 0)
    high = max(int(tile_index.max()) if len(tile_index) else 0, int(last.max()) if len(last) else 0)
    width = high - low + 1
    keys = (
        max(int(tile_kid.max()) if len(tile_kid) else 0, int(request_kid.max()) if len(request_kid) else 0)
        + 1
    )
    if keys * width < _CODE_LIMIT:
        return (
            tile_kid * width + (tile_index - low),
            request_kid * width + (first - low),
            request_kid * width + (last - low),
        )
    # Very sparse tile numbers: rank them first (a sort; rare).
    ranks = np.unique(np.concatenate([tile_index, first, last]))
    width = len(ranks)
    return tuple(
        k * width + np.searchsorted(ranks, t)
        for k, t in ((tile_kid, tile_index), (request_kid, first), (request_kid, last))
    )
