"""Aggregation views in batch, for the backfill: the per-tile partials the stream path keeps, from the
raw events (``fs materialize``, ``fs_platform.backfill``), compiled to Spark. The layout and the values
are ``fs_platform.aggregation.tiles``' (docs/aggregations.md).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fs_platform.aggregation import sketch
from fs_platform.aggregation.spec import AggregationSpec
from fs_platform.aggregation.tiles import layout
from fs_platform.plugins.delta.aggregation_events import event_rows
from fs_platform.plugins.delta.aggregation_kernel import INPUT, KEY, US, pickle_by_value


def tiles(events: DataFrame, spec: AggregationSpec, start: datetime, end: datetime) -> DataFrame:
    """Per (keys, granularity, tile) partials of the events with ``start <= time < end``: the join
    keys, ``tag`` (``Granularity.tag``), ``tile`` (bigint index) and ``s0, s1, ...`` (double) in
    ``fs_platform.aggregation.tiles.layout(spec)`` order, with the stream path's values (n count, s sum,
    q M2 = sum of squared deviations from the tile's mean, m min or +inf, M max or -inf, t latest
    input time in epoch micros or -inf, l its value, ties the larger, or NaN)."""
    from fs_platform.timeutil import epoch_micros

    rows = event_rows(events, spec, epoch_micros(start), epoch_micros(end) - 1)
    slots = layout(spec)
    inputs = {}
    for i in range(len(spec.inputs)):
        x = F.col(INPUT.format(i))
        valid = x.isNotNull() & ~F.isnan(x) & (F.abs(x) != F.lit(math.inf))
        inputs[i] = (valid, F.when(valid, x))
    aggregates = []
    hashed = sorted({i for kind, i in slots if kind == "h"})
    if hashed:
        rows = _with_codes(rows, hashed)
    for index, (kind, i) in enumerate(slots):
        name = f"s{index}"
        if kind == "h":  # the sketch's words come from its registers (_sketch_words), joined below
            continue
        if i < 0:
            aggregates.append(F.count(F.lit(1)).cast("double").alias(name))
            continue
        valid, x = inputs[i]
        if kind == "n":
            value = F.count(x).cast("double")
        elif kind == "s":
            value = F.coalesce(F.sum(x), F.lit(0.0))
        elif kind == "q":  # M2: squared deviations from the tile's mean
            value = F.coalesce(F.var_pop(x) * F.count(x), F.lit(0.0))
        elif kind == "m":
            value = F.coalesce(F.min(x), F.lit(math.inf))
        elif kind == "M":
            value = F.coalesce(F.max(x), F.lit(-math.inf))
        elif kind == "t":
            value = F.coalesce(F.max(F.when(valid, F.col(US))).cast("double"), F.lit(-math.inf))
        else:  # "l": the value at the latest time, ties the larger value
            latest = F.max(F.when(valid, F.struct(F.col(US).alias("t"), x.alias("v"))))
            value = F.coalesce(latest.getField("v"), F.lit(math.nan))
        aggregates.append(value.alias(name))
    keys = [F.col(KEY.format(i)).alias(k) for i, k in enumerate(spec.join_keys)]
    frames = []
    group = [KEY.format(i) for i in range(len(spec.join_keys))] + ["__fs_tile"]
    for g in spec.granularities:
        tiled = rows.withColumn("__fs_tile", _floor_div(US, g.tile_us))
        frame = tiled.groupBy(*group).agg(*aggregates)
        for i in hashed:
            first = slots.index(("h", i))
            words = _sketch_words(tiled, group, f"__fs_h{i}", first)
            frame = frame.join(words, on=group, how="left").fillna(
                0.0, subset=list(words.columns[len(group) :])
            )
        frames.append(
            frame.select(
                *keys,
                F.lit(g.tag).alias("tag"),
                F.col("__fs_tile").alias("tile"),
                *[F.col(f"s{j}") for j in range(len(slots))],
            )
        )
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _floor_div(name: str, size: int):
    """floor(column / size) exactly, in integers (toward -inf before 1970 too)."""
    return F.expr(f"(`{name}` - pmod(`{name}`, {size})) div {size}")


def _with_codes(rows: DataFrame, inputs: list[int]) -> DataFrame:
    """``rows`` with ``__fs_h<i>``: each hashed input's sketch code (``sketch.codes``, 0: not counted)."""
    schema = T.StructType([*rows.schema.fields, *[T.StructField(f"__fs_h{i}", T.LongType()) for i in inputs]])
    pickle_by_value(sys.modules[__name__])
    return rows.mapInArrow(_Codes(tuple(inputs)), schema)


class _Codes:
    """``mapInArrow`` function adding the sketch codes of some inputs (numpy; the stream's own function)."""

    def __init__(self, inputs: tuple[int, ...]):
        self.inputs = inputs

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns = dict(zip(batch.schema.names, batch.columns, strict=True))
            for i in self.inputs:
                x = pc.fill_null(batch.column(INPUT.format(i)), math.nan).to_numpy(zero_copy_only=False)
                columns[f"__fs_h{i}"] = pa.array(sketch.codes(x), pa.int64())
            yield pa.RecordBatch.from_pydict(columns)


def _sketch_words(tiled: DataFrame, group: list[str], code: str, first: int) -> DataFrame:
    """Per group the sketch's ``sketch.WORDS`` slots ``s<first>...``: each register's largest rank (a
    base-64 digit) summed into its word; exact (integers below 2**48)."""
    c = F.col(code)
    registers = (
        tiled.where(c > 0)
        .select(*group, F.floor(c / 64).cast("bigint").alias("__fs_r"), (c % 64).alias("__fs_k"))
        .groupBy(*group, "__fs_r")
        .agg(F.max("__fs_k").alias("__fs_k"))
    )
    r, k = F.col("__fs_r"), F.col("__fs_k")
    per = sketch.PER_WORD
    words = [
        F.coalesce(F.sum(F.when(F.floor(r / per) == j, k * F.pow(F.lit(64.0), r % per))), F.lit(0.0))
        .cast("double")
        .alias(f"s{first + j}")
        for j in range(sketch.WORDS)
    ]
    return registers.groupBy(*group).agg(*words)
