"""Raw events into tile records, the stream path's write side: each spec's filter and input values
per event (``inputs_of_views``), and the events' per-tile partials in ``layout(spec)`` order
(``partials``), which the tile script merges into the stored tiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fs_platform.aggregation import sketch
from fs_platform.aggregation.spec import AggregationSpec
from fs_platform.aggregation.tiles import layout


def inputs_of_views(specs: Sequence[AggregationSpec], table: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
    """For raw events as Arrow, per spec: which rows pass its ``where`` (bool array) and each of its
    inputs' value per row as float64 (rows x inputs; NaN where null or not finite; booleans as 0/1).
    Each distinct expression (filter or input) of all the specs is evaluated once, in one pass."""
    import pyarrow.dataset as ds

    n = table.num_rows
    table = nan_as_null(table, set().union(*(s.columns for s in specs)))
    exprs: dict[str, int] = {}  # expression text -> projected column
    projection = {}
    for spec in specs:
        for e in [*spec.inputs, *([spec.where] if spec.where is not None else [])]:
            if e.to_json() not in exprs:
                exprs[e.to_json()] = len(exprs)
                projection[f"e{exprs[e.to_json()]}"] = e.to_arrow()
    out = ds.dataset(table).to_table(columns=projection) if projection else None
    columns: dict[int, np.ndarray] = {}

    def numbers(j: int) -> np.ndarray:
        if j not in columns:
            arr = out[f"e{j}"].combine_chunks()
            if pa.types.is_boolean(arr.type):
                arr = arr.cast(pa.float64())
            v = pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype(np.float64)
            v[~np.isfinite(v)] = np.nan
            columns[j] = v
        return columns[j]

    result = []
    for spec in specs:
        if spec.where is not None:
            where = out[f"e{exprs[spec.where.to_json()]}"]
            keep = pc.fill_null(where, False).to_numpy(zero_copy_only=False).astype(bool)
        else:
            keep = np.ones(n, dtype=bool)
        values = np.empty((n, len(spec.inputs)), dtype=np.float64)
        for i, e in enumerate(spec.inputs):
            values[:, i] = numbers(exprs[e.to_json()])
        result.append((keep, values))
    return result


def nan_as_null(table: pa.Table, columns) -> pa.Table:
    """NaN in a float column read by the spec is null, as in SQL (Spark orders NaN above every number,
    IEEE makes every comparison with it false: neither is what a missing amount means)."""
    for name in columns:
        if name in table.column_names and pa.types.is_floating(table.schema.field(name).type):
            column = table.column(name)
            cleaned = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
            table = table.set_column(table.schema.get_field_index(name), name, cleaned)
    return table


def partials(spec: AggregationSpec, group: np.ndarray, times_us: np.ndarray, values: np.ndarray):
    """Per (group, tile size, tile): the tile record of the rows in it, as the stream keeps it.

    ``group``: a group id per row (e.g. entity x Kafka partition), ``times_us`` int64 event times,
    ``values`` rows x inputs (NaN = null). Returns ``(group, tile size index, tile index, records)``
    arrays, one entry per non-empty (group, tile size, tile); ``records`` is (entries, slots) float64 in
    ``layout(spec)`` order. The tile script merges such records into the stored tiles (tiles.lua mode b)."""
    slots = layout(spec)
    order = np.lexsort((times_us, group))  # by group, then time: sorted by tile for every tile size
    gs, us = group[order], times_us[order]
    first_of_group = np.ones(len(order), dtype=bool)
    first_of_group[1:] = gs[1:] != gs[:-1]
    per_input: dict = {}  # (what, input) -> sorted column, computed once for every tile size

    def column(what: str, i: int) -> np.ndarray:
        if (what, i) not in per_input:
            x = values[order, i]
            valid = ~np.isnan(x)
            per_input[("x", i)], per_input[("valid", i)] = x, valid
            per_input[("n", i)] = valid.astype(np.float64)
            per_input[("s", i)] = np.where(valid, x, 0.0)
            per_input[("m", i)] = np.where(valid, x, np.inf)
            per_input[("M", i)] = np.where(valid, x, -np.inf)
            per_input[("h", i)] = sketch.codes(x) if ("h", i) in slots else None
        return per_input[(what, i)]

    out_g, out_gi, out_tile, out_rec = [], [], [], []
    for gi, g in enumerate(spec.granularities):
        ts = us // g.tile_us
        change = first_of_group.copy()
        change[1:] |= ts[1:] != ts[:-1]
        starts = np.flatnonzero(change)
        segment = np.cumsum(change) - 1  # segment of each (sorted) row
        rec = np.empty((len(starts), len(slots)), dtype=np.float64)
        for c, (kind, i) in enumerate(slots):
            if kind == "h":  # the sketch's words, filled at its first slot
                if slots[c - 1] != (kind, i):
                    registers = sketch.registers_of(segment, column("h", i), len(starts))
                    rec[:, c : c + sketch.WORDS] = sketch.pack(registers)
            elif i < 0:
                rec[:, c] = np.diff(np.append(starts, len(order)))
            elif kind in ("n", "s"):
                rec[:, c] = np.add.reduceat(column(kind, i), starts)
            elif kind == "q":
                n, total = np.add.reduceat(column("n", i), starts), np.add.reduceat(column("s", i), starts)
                mean = np.divide(total, n, out=np.zeros_like(total), where=n > 0)[segment]
                x, valid = column("x", i), column("valid", i)
                rec[:, c] = np.add.reduceat(np.where(valid, (x - mean) ** 2, 0.0), starts)
            elif kind == "m":
                rec[:, c] = np.minimum.reduceat(column("m", i), starts)
            elif kind == "M":
                rec[:, c] = np.maximum.reduceat(column("M", i), starts)
            elif kind == "t":  # with its "l" (next slot): the latest valid time, ties the larger value
                valid = column("valid", i)
                t = np.where(valid, us.astype(np.float64), -np.inf)
                last = np.lexsort((column("M", i), t, segment))
                pick = last[
                    np.append(starts[1:], len(order)) - 1
                ]  # the last row of each segment in that order
                rec[:, c] = t[pick]
                rec[:, c + 1] = np.where(np.isfinite(t[pick]), column("x", i)[pick], np.nan)
        out_g.append(gs[starts])
        out_gi.append(np.full(len(starts), gi))
        out_tile.append(ts[starts])
        out_rec.append(rec)
    return (np.concatenate(out_g), np.concatenate(out_gi), np.concatenate(out_tile), np.vstack(out_rec))
