"""The events of an aggregation view that count, as the rows the kernel reads
(:mod:`fs_platform.plugins.delta.aggregation_kernel` names their columns). Shared by the point-in-time
retrieval (:mod:`~fs_platform.plugins.delta.aggregation_as_of`) and the tile backfill
(:mod:`~fs_platform.plugins.delta.aggregation_tiles`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fs_platform.aggregation.spec import AggregationSpec
from fs_platform.plugins.delta.aggregation_kernel import INPUT, KEY, US
from fs_platform.plugins.delta.retrieval import col


def event_rows(
    events: DataFrame,
    spec: AggregationSpec,
    lower_us: int | None = None,
    upper_us: int | None = None,
) -> DataFrame:
    """The events that count, in kernel names: keys ``__fs_k<i>``, time ``__fs_us`` (epoch micros),
    inputs ``__fs_x<i>`` as double (booleans 1/0). Drops rows failing ``where`` (null = false) and
    rows with a null key or time; keeps ``lower_us <= time <= upper_us`` when given."""
    frame = events
    types = dict(events.dtypes)
    floats = [c for c in sorted(spec.columns) if types.get(c) in ("double", "float")]
    if floats:  # NaN is null, as in SQL (fs.aggregation.tile_records.nan_as_null does the same in Arrow)
        frame = frame.withColumns({c: F.when(~F.isnan(col(c)), col(c)) for c in floats})
    if spec.where is not None:
        frame = frame.where(spec.where.to_spark())
    us = F.unix_micros(col(spec.timestamp_field).cast("timestamp"))
    columns = [col(k).alias(KEY.format(i)) for i, k in enumerate(spec.join_keys)]
    columns.append(us.alias(US))
    columns += [e.to_spark().cast("double").alias(INPUT.format(i)) for i, e in enumerate(spec.inputs)]
    rows = frame.select(*columns)
    keep = F.col(US).isNotNull()
    for i in range(len(spec.join_keys)):
        keep = keep & F.col(KEY.format(i)).isNotNull()
    if lower_us is not None:
        keep = keep & (F.col(US) >= F.lit(lower_us))
    if upper_us is not None:
        keep = keep & (F.col(US) <= F.lit(upper_us))
    return rows.where(keep)
