"""Aggregation views in training: an ``AggregationSpec`` (fs.aggregation) compiled to Spark, the feature
values as of every entity row (``get_historical_features``). Plain PySpark DataFrame code (Sail, Spark
Connect, classic Spark); the per-tile partials for the backfill are
:mod:`fs_platform.plugins.delta.aggregation_tiles`.

Semantics (docs/aggregations.md; the contract shared with the stream path and the online read): a
feature with window span ``w`` and tile size ``g`` has, at request time ``t`` for key ``k``, the
aggregate of ``k``'s events ``e`` (after the spec's ``where``) with ``tile(e.time) >= tile(t) - w/g``
and ``e.time <= t``, where ``tile(x) = floor(x_us / g_us)``. Null, NaN and infinite inputs are
ignored; count and sum of nothing are 0, the other functions null; ``last`` is the value of the
latest event (ties: the larger value); ``stddev`` is ``fs_platform.aggregation.tiles.stddev`` of (n, s, q).

Formulation (measured on Sail 0.7.2; numbers in docs/offline_store.md, "Aggregation views"): the events
and the distinct (key, request time) pairs of the entity rows are unioned, hash-partitioned by key and
handed to one ``mapInArrow`` kernel (:mod:`fs_platform.plugins.delta.aggregation_kernel`, numpy only).
The kernel's rows are left-joined back to the entity rows on (keys, request time).

Spark window functions were measured first and dropped: on Sail 0.7.2 a running sum over 10M events
partitioned by (key, tile) took 11 s for one tile size (Sail evaluates aggregate windows row by row
and pays per partition), and a ``RANGE n PRECEDING`` frame subtracts retracted values from a running
sum (cancellation on long histories).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fs_platform.aggregation.spec import COUNTS, AggregationSpec
from fs_platform.errors import OfflineStoreError
from fs_platform.plugins.delta.aggregation_events import event_rows
from fs_platform.plugins.delta.aggregation_kernel import (
    INPUT,
    KEY,
    REQ,
    US,
    Kernel,
    KernelPlan,
    pickle_by_value,
)
from fs_platform.plugins.delta.retrieval import col


def as_of(
    entity: DataFrame,
    entity_ts: str,
    join_keys: list[str],
    spec: AggregationSpec,
    events: DataFrame,
    outputs: dict[str, str],
    *,
    partitions: int | None = None,
) -> DataFrame:
    """``entity`` (every row, duplicates included, any order) with one column per requested feature.

    ``join_keys``: the entity columns holding ``spec.join_keys``, in that order. ``events``: the raw
    events (columns ``spec.join_keys``, ``spec.timestamp_field`` and ``spec.columns``); pre-filtering
    them to ``[min entity time - spec.horizon_us, max entity time]`` is the caller's choice (it only
    saves work). ``outputs``: feature name -> output column name (a subset of the spec's features).
    ``partitions``: how many key-hash partitions the kernel runs in (default: the embedded Sail's
    parallelism, else the session's ``spark.sql.shuffle.partitions``). Counts are ``bigint`` (0 when
    nothing counts), the rest double.
    """
    features = {f.name: f for f in spec.features}
    unknown = [name for name in outputs if name not in features]
    if unknown:
        raise OfflineStoreError(f"aggregation view {spec.view!r} has no feature {unknown[0]!r}")
    if len(join_keys) != len(spec.join_keys):
        raise OfflineStoreError(
            f"aggregation view {spec.view!r} aggregates by {list(spec.join_keys)}; "
            f"got entity keys {join_keys}"
        )
    if not outputs:
        return entity
    wanted = [features[name] for name in outputs]
    plan = KernelPlan.build(spec, wanted, [outputs[f.name] for f in wanted])
    key_types = {f.name: f.dataType for f in events.schema.fields}
    keys = [KEY.format(i) for i in range(len(join_keys))]
    rows = event_rows(events, spec).withColumn(REQ, F.lit(False))
    request_us = F.unix_micros(col(entity_ts).cast("timestamp"))
    requests = entity.select(
        *[
            col(j).cast(key_types[k]).alias(a)
            for j, k, a in zip(join_keys, spec.join_keys, keys, strict=True)
        ],
        request_us.alias(US),
    )
    requests = requests.where(_all_not_null([*keys, US])).distinct()
    requests = requests.select(
        *keys,
        US,
        *[F.lit(None).cast("double").alias(INPUT.format(i)) for i in range(len(spec.inputs))],
        F.lit(True).alias(REQ),
    )
    union = rows.unionByName(requests)
    count = partitions or _shuffle_partitions(entity)
    schema = T.StructType(
        [T.StructField(k, key_types[name]) for k, name in zip(keys, spec.join_keys, strict=True)]
        + [T.StructField(US, T.LongType())]
        + [
            T.StructField(out, T.LongType() if f.function in COUNTS else T.DoubleType())
            for f, out in plan.named
        ]
    )
    pickle_by_value()
    values = union.repartition(count, *keys).mapInArrow(Kernel(plan), schema)

    ets = f"__fs_ets_{spec.view}"
    left = entity.withColumn(ets, request_us)
    condition = [col(j) == F.col(k) for j, k in zip(join_keys, keys, strict=True)]
    condition.append(F.col(ets) == F.col(US))
    joined = left.join(values, on=_and(condition), how="left").drop(*keys, US, ets)
    # No request row (a null key or time) -> what an entity without events gets.
    defaults = []
    for name in joined.columns:
        f = next((f for f, out in plan.named if out == name), None)
        if f is not None and f.function in ("sum", *COUNTS):
            zero = F.lit(0).cast("bigint") if f.function in COUNTS else F.lit(0.0)
            defaults.append(F.coalesce(col(name), zero).alias(name))
        else:
            defaults.append(col(name))
    return joined.select(*defaults)


def _shuffle_partitions(frame: DataFrame) -> int:
    from fs_platform.plugins.delta.engine import partitions_for

    embedded = partitions_for(frame.sparkSession)
    if embedded:
        return embedded
    try:
        value = frame.sparkSession.conf.get("spark.sql.shuffle.partitions")
        return max(int(value or 0), 1)
    except Exception:  # a session that does not expose the setting
        return 8


def _all_not_null(names: list[str]):
    return _and([F.col(n).isNotNull() for n in names])


def _and(conditions: list):
    result = conditions[0]
    for condition in conditions[1:]:
        result = result & condition
    return result
