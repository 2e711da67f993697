"""The newest row per entity: one rule for every path that picks it outside Spark.

The point-in-time join (``plugins/delta/pit_join.py``) picks, per entity, the row with the largest
event time, then the largest created time (a null created time loses), then the largest
``tie_hash`` of the feature values. The online store's ordered write keeps the stored row unless a
new one is strictly newer in (event, created), so among rows that tie in both, the first written
stays. This module applies the same order in numpy (the ingestor's online batches, the backfill's
chunk output) and reports exact ties, where the caller decides: the backfill reads the chunk back
through Spark (``tie_hash``), the ingestor keeps the first row, as the online store would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NULL_LOSES = np.iinfo(np.int64).min


def _micros(column: pa.ChunkedArray) -> np.ndarray:
    values = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return pc.fill_null(values, _NULL_LOSES).to_numpy()


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_integer(column.type) and column.null_count == 0:
        return column.to_numpy()
    return pd.factorize(column.to_pandas(), use_na_sentinel=True)[0]


def newest_per_key(
    table: pa.Table, keys: list[str], event_col: str, created_col: str | None = None
) -> tuple[np.ndarray, bool]:
    """``(indices, tied)``: the index of the newest row of each entity (ascending), and whether some
    entity's newest rows tie exactly in (event, created) time (the earliest of them is picked)."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int64), False
    event = _micros(table[event_col])
    created = (
        _micros(table[created_col])
        if created_col and created_col in table.column_names
        else np.zeros(n, dtype=np.int64)
    )
    codes = [_codes(table[k]) for k in keys]
    # lexsort: the last key is the primary one. Within an entity, ascending (event, created, -row), so the
    # last row of each entity is the newest, the earliest one among exact ties.
    order = np.lexsort((-np.arange(n), created, event, *reversed(codes)))
    boundary = np.ones(n, dtype=bool)  # True where the next sorted row is another entity
    if n > 1:
        same = np.ones(n - 1, dtype=bool)
        for c in codes:
            k = c[order]
            same &= k[1:] == k[:-1]
        boundary[:-1] = ~same
    last = np.flatnonzero(boundary)
    tied = False
    if n > 1:
        prev = last[last > 0] - 1
        prev = prev[~boundary[prev]]  # the row before an entity's newest, when it is the same entity
        newest = prev + 1
        tied = bool(
            np.any(
                (event[order[prev]] == event[order[newest]])
                & (created[order[prev]] == created[order[newest]])
            )
        )
    return np.sort(order[last]), tied
