"""Point-in-time join in the Spark DataFrame API (runs unchanged on Sail, Spark Connect and classic Spark).

For every feature view, and every distinct (join keys, entity timestamp) pair of the entity frame,
pick the feature row with

    same join keys  AND  feature_ts <= entity_ts  AND  feature_ts >= entity_ts - ttl   (ttl > 0 only)
                    [AND created_ts <= entity_ts   when filter_by_created_timestamp]

with the largest ``feature_ts``, ties broken by the largest ``created_ts`` (a null created timestamp
loses), then by the largest hash of all the view's feature values (``tie_hash``), so that the pick
among rows equal in both does not depend on the order the engine reads them in. Both TTL bounds are
inclusive, as in Feast's file/dask store. Rows with a null feature timestamp or a null join key never
match. Every entity row survives (duplicates included) with nulls where nothing matched.

Formulation (chosen by measurement on Sail; numbers in docs/offline_store.md "Performance"): per
view, one sort of the feature rows by (key, ts, created, tie-break) and ``lead()`` turn each row into
a validity interval ``[ts, next ts of the same key)`` (clipped to the TTL), and the entity rows are
left-joined on keys + a TTL-wide time bucket with "entity time inside the interval" in the join
condition: exactly one match per entity row, so no per-entity-row candidate set is built, ranked or
joined back, and views are chained left joins on the entity frame. The window is partitioned by a
hash of the keys into a few dozen groups and ordered by the keys, not partitioned per key: Sail pays
per window partition. Measured slower on Sail 0.7.2: a union of entity and feature rows carrying the
latest feature row forward with ``last(..., ignorenulls)`` or ``lag(...) IGNORE NULLS`` (3-8x; their
cost grows with the window partition), one ``lead()`` of a struct instead of one per column (~1.5x),
joining every in-TTL candidate then ranking with ``row_number()``, ``max_by`` or
``max(struct)`` (4-24x), and a forward fill in numpy inside ``mapInArrow`` (~4x; Sail also drops a
sort placed before ``mapInArrow``, so only a window can order its input).
``filter_by_created_timestamp`` makes validity depend on the entity time, so that case keeps the
candidate join + ``row_number()`` formulation (:func:`_candidate_join`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fs_platform.plugins.delta.retrieval import ViewPlan, col
from fs_platform.timeutil import duration_micros

_ENTITY_TS = "__fs_ets"
_TS = "__fs_ts"
_CREATED = "__fs_created"
_RANK = "__fs_rank"
_TIE = "__fs_tie"


def feature_rows(
    frame: DataFrame,
    plan: ViewPlan,
    key_names: list[str],
    lower: datetime | None,
    upper: datetime | None,
) -> DataFrame:
    """The view's source rows in internal names, pruned to ``[lower, upper]`` event time."""
    if plan.date_partition_column:
        # Prune whole partitions first; the exact bounds below still decide row by row.
        if lower is not None:
            frame = frame.where(col(plan.date_partition_column) >= F.lit(lower.date().isoformat()))
        if upper is not None:
            frame = frame.where(col(plan.date_partition_column) <= F.lit(upper.date().isoformat()))
    if plan.source_keys:
        columns = [col(s).alias(k) for s, k in zip(plan.source_keys, key_names, strict=True)]
    else:  # an entity-less view: one constant key (see entity_keys_of)
        columns = [F.lit(0).alias(k) for k in key_names]
    columns.append(col(plan.timestamp_field).cast("timestamp").alias(_TS))
    if plan.created_timestamp_column:
        columns.append(col(plan.created_timestamp_column).cast("timestamp").alias(_CREATED))
    else:
        columns.append(F.lit(None).cast("timestamp").alias(_CREATED))
    columns += [col(s).alias(out) for s, out in plan.features]
    columns.append(tie_hash(plan.tie_columns).alias(_TIE))
    rows = frame.select(*columns).where(F.col(_TS).isNotNull())
    if lower is not None:
        rows = rows.where(F.col(_TS) >= F.lit(lower))
    if upper is not None:
        rows = rows.where(F.col(_TS) <= F.lit(upper))
    return rows


def point_in_time_join(
    entity: DataFrame,
    entity_ts: str,
    plans: list[ViewPlan],
    frames: dict[str, DataFrame],
    ts_range: tuple[datetime, datetime],
    filter_by_created_timestamp: bool,
) -> DataFrame:
    """``entity`` with every plan's output columns appended (see module docstring for semantics).

    ``frames`` maps plan name -> the Spark frame of its source; ``ts_range`` bounds the entity
    timestamps (UTC) and is only used to prune source rows.
    """
    result = entity
    for index, plan in enumerate(plans):
        lower = ts_range[0] - plan.ttl if plan.ttl else None
        if filter_by_created_timestamp and plan.created_timestamp_column:
            result = _candidate_join(result, entity_ts, plan, frames[plan.name], lower, ts_range[1])
        else:
            result = _interval_join(result, entity_ts, plan, frames[plan.name], lower, ts_range[1], index)
    return result


def _interval_join(
    entity: DataFrame,
    entity_ts: str,
    plan: ViewPlan,
    frame: DataFrame,
    lower: datetime | None,
    upper: datetime | None,
    index: int,
) -> DataFrame:
    """ASOF join through validity intervals: no per-entity-row candidate set, no ranking of it.

    Per key, sort the feature rows by (event ts, created ts nulls first, tie-break); row *i* is the
    answer for every entity time in ``[ts_i, ts_{i+1})`` (``lead()``). A row tied with a later one
    gets the empty interval ``[ts, ts)``, so the winner of a tie is the last in sort order. The
    intervals of a key are disjoint, so a left join of the entity rows on key + "entity time inside
    the interval" + TTL yields exactly one row per entity row: entity duplicates need no
    de-duplication and nothing has to be joined back. With a TTL the equi-join also matches a time
    bucket of TTL width (an interval clipped to the TTL spans at most two buckets), so each entity row
    only meets the feature rows of its own and the previous TTL window, however long the history is.

    The window is partitioned by a hash of the keys into :data:`_WINDOW_PARTITIONS` groups and
    ordered by the keys first, not partitioned by the keys: Sail (DataFusion) pays per window
    partition, and a partition per key made the window ~4x slower. ``lead()`` of the keys tells
    where a key's rows end.
    """
    prefix = f"__fs_v{index}_"
    keys = [f"{prefix}k{i}" for i in range(max(len(plan.join_keys), 1))]
    next_keys = [f"{prefix}nk{i}" for i in range(len(keys))]
    ts, nts, bucket, entity_bucket = (f"{prefix}{n}" for n in ("ts", "nts", "b", "eb"))
    features = [col(out) for _, out in plan.features]
    rows = feature_rows(frame, plan, keys, lower, upper)
    rows = rows.where(_and([F.col(k).isNotNull() for k in keys]))  # a null key never matches
    order = [*[F.col(k) for k in keys], F.col(_TS).asc(), F.col(_CREATED).asc_nulls_first()]
    order.append(F.col(_TIE))
    groups = F.pmod(F.xxhash64(*[F.col(k) for k in keys]), F.lit(_WINDOW_PARTITIONS))
    window = Window.partitionBy(groups).orderBy(*order)
    # One lead() per column: Sail runs each window expression as its own operator, and a lead() of
    # a struct of them was slower than the separate ones.
    leads = rows.select(
        *keys,
        F.col(_TS).alias(ts),
        *[F.lead(F.col(k)).over(window).alias(n) for k, n in zip(keys, next_keys, strict=True)],
        F.lead(F.col(_TS)).over(window).alias(nts),
        *features,
    )
    same_key = _and([F.col(n) == F.col(k) for k, n in zip(keys, next_keys, strict=True)])
    intervals = leads.select(*keys, ts, F.when(same_key, F.col(nts)).alias(nts), *features)
    # Tie losers have empty intervals: drop them before the join.
    intervals = intervals.where(F.col(nts).isNull() | (F.col(nts) > F.col(ts)))
    ets = col(entity_ts)
    left, entity_keys, constant = entity_keys_of(entity, plan, prefix)
    condition = [e == F.col(k) for e, k in zip(entity_keys, keys, strict=True)]
    condition.append(F.col(ts) <= ets)
    if plan.ttl:
        ttl_us = duration_micros(plan.ttl)
        # With the TTL an interval serves entity times in [ts, min(nts, ts + ttl + 1us)) (both TTL bounds
        # inclusive): one exclusive end (least() skips the null nts of a key's last row), so the join
        # checks two comparisons. The interval's last served time, end - 1us, is at most ts + ttl, so
        # it touches the TTL-wide bucket of ts and at most the next (taken from end - 1us: end itself
        # may lie two buckets on when ts is the last microsecond of its bucket).
        end = F.least(F.col(nts), F.col(ts) + _interval_us(ttl_us + 1))
        intervals = intervals.withColumn(nts, end)
        width = ttl_us
        first_bucket = _bucket(F.col(ts), width)
        last_bucket = _bucket(F.col(nts) - _interval_us(1), width)
        buckets = F.when(last_bucket > first_bucket, F.array(first_bucket, last_bucket)).otherwise(
            F.array(first_bucket)
        )
        intervals = intervals.withColumn(bucket, F.explode(buckets))
        left = left.withColumn(entity_bucket, _bucket(ets, width))
        condition += [F.col(entity_bucket) == F.col(bucket), ets < F.col(nts)]
    else:
        condition.append(F.col(nts).isNull() | (ets < F.col(nts)))
    joined = left.join(intervals, on=_and(condition), how="left")
    return joined.drop(*keys, ts, nts, bucket, entity_bucket, *constant)


def entity_keys_of(entity: DataFrame, plan: ViewPlan, prefix: str) -> tuple[DataFrame, list[Any], list[str]]:
    """(entity frame, its key columns to match the view's keys on, added columns to drop): the join
    keys, or for an entity-less view one added constant column (equal to the constant key of
    :func:`feature_rows`), so the join stays an equi-join and every entity row meets the view's rows."""
    if plan.join_keys:
        return entity, [col(j) for j in plan.join_keys], []
    name = f"{prefix}ek"
    return entity.withColumn(name, F.lit(0)), [F.col(name)], [name]


_WINDOW_PARTITIONS = 64
"""Hash groups of the join keys that the interval window is partitioned by (see above)."""


def _interval_us(micros: int) -> Any:
    return F.expr(f"INTERVAL {micros} MICROSECONDS")


def _bucket(timestamp: Any, micros: int) -> Any:
    """Start (epoch microseconds) of the ``micros``-wide time bucket of ``timestamp``.

    Exact integer arithmetic (``pmod`` is never negative, so buckets before 1970 are as wide).
    """
    epoch_micros = F.unix_micros(timestamp)
    return epoch_micros - F.pmod(epoch_micros, F.lit(micros))


def tie_hash(source_columns: Iterable[str]) -> Any:
    """Last sort key among rows equal in (key, event ts, created ts): the largest hash of the
    feature values wins, over all the view's features (map-typed ones left out: classic Spark
    refuses to hash maps) whichever are requested.

    It makes the winner of such a tie a function of the data, not of the order the engine happened
    to read the rows in (rows with identical values hash equal, and then either may win), and the
    same row in every path: the point-in-time join, ``pull_latest`` (materialization) and parity.
    """
    columns = [col(c) for c in source_columns]
    return F.xxhash64(*columns) if columns else F.lit(0).cast("bigint")


def _and(conditions: list[Any]) -> Any:
    result = conditions[0]
    for condition in conditions[1:]:
        result = result & condition
    return result


def _candidate_join(
    entity: DataFrame,
    entity_ts: str,
    plan: ViewPlan,
    frame: DataFrame,
    lower: datetime | None,
    upper: datetime | None,
) -> DataFrame:
    """Join every in-TTL candidate, rank with ``row_number()``, join the winners back.

    Used with ``filter_by_created_timestamp``: the created-time filter depends on the entity time, so
    a feature row's validity is not an interval of entity times and :func:`_interval_join` cannot apply.
    """
    keys = [f"__fs_k{i}" for i in range(max(len(plan.join_keys), 1))]
    rows = feature_rows(frame, plan, keys, lower, upper)
    entity_keys = [col(j) for j in plan.join_keys] or [F.lit(0)]  # entity-less: the constant key
    wanted = entity.select(
        *[e.alias(k) for e, k in zip(entity_keys, keys, strict=True)],
        col(entity_ts).alias(_ENTITY_TS),
    ).distinct()
    matched = wanted.join(rows, on=keys, how="inner").where(F.col(_TS) <= F.col(_ENTITY_TS))
    if plan.ttl:
        matched = matched.where(F.col(_TS) >= F.col(_ENTITY_TS) - _interval_us(duration_micros(plan.ttl)))
    if plan.created_timestamp_column:
        matched = matched.where(F.col(_CREATED) <= F.col(_ENTITY_TS))
    ranking = [F.col(_TS).desc(), F.col(_CREATED).desc_nulls_last()]
    ranking.append(F.col(_TIE).desc())
    order = Window.partitionBy(*keys, _ENTITY_TS).orderBy(*ranking)
    best = (
        matched.withColumn(_RANK, F.row_number().over(order))
        .where(F.col(_RANK) == 1)
        .select(
            *[F.col(k).alias(j) for k, j in zip(keys, plan.join_keys, strict=False)],
            F.col(_ENTITY_TS).alias(entity_ts),
            *[col(out) for _, out in plan.features],
        )
    )
    return entity.join(best, on=[*plan.join_keys, entity_ts], how="left")
