"""What the online store should hold at ``as_of``, computed offline.

Per sampled entity: the newest offline row with ``event_ts <= as_of`` (ties broken by the newest
created timestamp, a null one losing) — the row materialization and the point-in-time join pick.
The row is returned whatever its age, with its event time, so the classifier can tell "past ttl"
(both stores should serve nothing) from "never there". The ttl test itself is in
``fs_platform.parity.classify`` and uses the offline store's inclusive bound: live iff
``event_ts >= as_of - ttl``, the same bound the Redis store applies at read time.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
from pyspark.sql import Window
from pyspark.sql import functions as F

from fs_platform.parity.spark_io import SparkIO, ViewSource
from fs_platform.plugins.delta.pit_join import tie_hash
from fs_platform.plugins.delta.retrieval import col

EVENT_TS = "__fs_event_ts"
CREATED_TS = "__fs_created_ts"


def expected_rows(io: SparkIO, src: ViewSource, keys: pa.Table, as_of: datetime) -> pa.Table:
    """Join keys, ``EVENT_TS``, ``CREATED_TS`` and the target's features; at most one row per key."""
    plan = src.plan
    ts = col(plan.timestamp_field).cast("timestamp")
    created = (
        col(plan.created_timestamp_column).cast("timestamp")
        if plan.created_timestamp_column
        else F.lit(None).cast("timestamp")
    )
    rows = (
        io.read(src)
        .select(
            *[col(s).alias(k) for s, k in zip(plan.source_keys, plan.join_keys, strict=True)],
            ts.alias(EVENT_TS),
            created.alias(CREATED_TS),
            *[col(s).alias(out) for s, out in plan.features],
            tie_hash(plan.tie_columns).alias("__fs_tie"),
        )
        .where(F.col(EVENT_TS).isNotNull() & (F.col(EVENT_TS) <= F.lit(as_of)))
    )
    wanted = io.upload(keys)
    rows = rows.join(wanted, on=list(plan.join_keys), how="left_semi")
    newest = Window.partitionBy(*[col(k) for k in plan.join_keys]).orderBy(
        F.col(EVENT_TS).desc(), F.col(CREATED_TS).desc_nulls_last(), F.col("__fs_tie").desc()
    )
    best = rows.withColumn("__fs_rank", F.row_number().over(newest)).where("__fs_rank = 1")
    best = best.drop("__fs_rank", "__fs_tie")
    return io.collect(best, column_types=dict(plan.output_types))


def expected_aggregates(io: SparkIO, src: ViewSource, keys: pa.Table, as_of: datetime) -> pa.Table:
    """An aggregation view's values as of ``as_of`` per key, computed by Spark from the raw events (the
    training path): join keys, ``EVENT_TS`` (= ``as_of``), a null ``CREATED_TS`` and the features."""
    from fs_platform.aggregation.spec import spec_of
    from fs_platform.plugins.delta.aggregation_as_of import as_of as aggregate_as_of

    plan = src.plan
    spec = spec_of(src.target.view)
    requests = io.upload(keys).withColumn(EVENT_TS, F.lit(as_of).cast("timestamp"))
    events = io.read(src)
    outputs = {f: f for f in src.target.features}
    frame = aggregate_as_of(requests, EVENT_TS, list(plan.join_keys), spec, events, outputs)
    frame = frame.withColumn(CREATED_TS, F.lit(None).cast("timestamp"))
    return io.collect(frame, column_types=dict(plan.output_types))
