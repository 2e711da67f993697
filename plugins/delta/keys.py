"""The entity key rule of ``fs_platform.entity_keys`` for entity frames given to Spark (a SQL string or
a Spark DataFrame): key columns cast to the join keys' types only where every value is exact, else
``EntityKeyTypeError`` (counted in the query that already reads the entity timestamps' range)."""

from __future__ import annotations

from typing import Any

from feast.value_type import ValueType
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fs_platform.entity_keys import CANONICAL_INT, INTEGER_KEYS, RANGES
from fs_platform.plugins.delta.retrieval import col

_INTEGRAL = {"long", "integer", "short", "byte"}


def exact_keys(frame: DataFrame, kinds: dict[str, ValueType]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({key: its cast}, {key: aggregate counting its values that are not exact}), both over ``frame``
    as given: count first (on ``frame``), then apply the casts with :func:`cast_keys`."""
    types = {f.name: f.dataType.typeName() for f in frame.schema.fields}
    casts: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for key, kind in kinds.items():
        spark_type = types.get(key)
        if spark_type is None:
            continue
        cast, bad = _rule(col(key), spark_type, kind)
        if cast is not None:
            casts[key] = cast
        if bad is not None:
            counts[key] = F.sum(F.when(col(key).isNotNull() & bad, 1).otherwise(0))
    return casts, counts


def cast_keys(frame: DataFrame, casts: dict[str, Any]) -> DataFrame:
    for key, cast in casts.items():
        frame = frame.withColumn(key, cast)
    return frame


def _rule(c: Any, spark_type: str, kind: ValueType) -> tuple[Any, Any]:
    """(cast expression or None, "not exact" condition or None) for one key column."""
    if kind in INTEGER_KEYS:
        low, high = RANGES[kind]
        if spark_type in _INTEGRAL:
            return None, ((c < F.lit(low)) | (c > F.lit(high))) if kind == ValueType.INT32 else None
        if spark_type in ("double", "float"):
            bad = F.isnan(c) | (c != F.floor(c)) | (c < F.lit(float(low))) | (c >= F.lit(float(high + 1)))
            return c.cast("bigint"), bad
        if spark_type == "decimal":
            return c.cast("bigint"), (c != F.floor(c)) | (c < F.lit(low)) | (c > F.lit(high))
        if spark_type == "string":
            wide = c.cast("decimal(38,0)")
            bad = ~c.rlike(f"^{CANONICAL_INT}$") | wide.isNull() | (wide < F.lit(low)) | (wide > F.lit(high))
            return c.cast("bigint"), bad
        return None, F.lit(True)
    if kind == ValueType.STRING:
        if spark_type == "string":
            return None, None
        if spark_type in _INTEGRAL:
            return c.cast("string"), None
        return None, F.lit(True)
    if kind == ValueType.BYTES:
        return None, None if spark_type == "binary" else F.lit(True)
    return None, None
