"""The entity rows of a historical retrieval: from the caller's ``entity_df`` (pandas, a Spark frame or
SQL; Feast's timestamp-column rule, keys cast exactly) or, in date-range mode, every entity the sources
saw in the range.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
import pyarrow as pa
from feast.feature_view import DUMMY_ENTITY_ID
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.repo_config import RepoConfig
from feast.value_type import ValueType
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fs_platform.entity_keys import error as entity_key_error
from fs_platform.entity_keys import exact_series
from fs_platform.errors import EntityDataFrameError
from fs_platform.plugins.delta.engine import Engine
from fs_platform.plugins.delta.job import Staging
from fs_platform.plugins.delta.keys import cast_keys, exact_keys
from fs_platform.plugins.delta.retrieval import ROW_ID, ViewPlan, col
from fs_platform.plugins.delta.tables import read_source
from fs_platform.timeutil import microsecond_timestamps, parse_time


def entity_key_types(view_features: dict) -> dict[str, ValueType]:
    """Entity-frame column -> the join key's type, for the views of a retrieval (entity-less: none)."""
    kinds: dict[str, ValueType] = {}
    for view in view_features:
        for c in view.entity_columns:
            if c.name != DUMMY_ENTITY_ID:
                kinds.setdefault(view.projection.join_key_map.get(c.name, c.name), c.dtype.to_value_type())
    return kinds


def entities(
    engine: Engine,
    staging: Staging | None,
    entity_df: pd.DataFrame | str | DataFrame,
    key_types: dict[str, ValueType],
) -> tuple[list[str], str, Callable[[], DataFrame], tuple[datetime, datetime]]:
    """(columns, timestamp column, loader of the Spark entity frame with ROW_ID, UTC ts range). Key
    columns are cast to the join keys' types when every value is exact (``fs_platform.entity_keys``)."""
    if isinstance(entity_df, pd.DataFrame):
        keys = {c: k for c, k in key_types.items() if c in entity_df.columns}
        exact = {c: exact_series(entity_df[c], k, key=c, where="entity_df") for c, k in keys.items()}
        return _pandas_entities(engine, staging, entity_df.assign(**exact) if exact else entity_df)
    try:
        frame = engine.spark.sql(entity_df) if isinstance(entity_df, str) else entity_df
        columns = list(frame.columns)
        types = {f.name: f.dataType.typeName() for f in frame.schema.fields}
    except Exception as exc:  # pyspark raises AnalysisException, ParseException, ... (no common base)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise EntityDataFrameError(
            f"entity_df query cannot be analysed by Spark: {type(exc).__name__}: {first}",
            hint="check the table names and columns in the query (run it alone with spark.sql(...).show())",
        ) from exc
    ts_col = _timestamp_column(columns, [c for c, t in types.items() if t in ("timestamp", "timestamp_ntz")])
    frame = frame.withColumn(ts_col, col(ts_col).cast("timestamp"))
    casts, counts = exact_keys(frame, {c: k for c, k in key_types.items() if c in columns})
    aggregates = [F.min(col(ts_col)), F.max(col(ts_col)), *counts.values()]
    low, high, *bad = frame.select(*aggregates).toArrow().to_pylist()[0].values()
    for key, count in zip(counts, bad, strict=True):
        if count:
            raise entity_key_error(key, key_types[key], count, "entity_df")
    frame = cast_keys(frame, casts)
    if low is None:
        raise EntityDataFrameError(f"entity_df has no rows with a {ts_col!r} timestamp")
    ts_range = (parse_time(low), parse_time(high))
    # Spark frames have no inherent order; this keeps the result stable relative to the input frame.
    return columns, ts_col, lambda: frame.withColumn(ROW_ID, F.monotonically_increasing_id()), ts_range


def _pandas_entities(
    engine: Engine, staging: Staging | None, entity_df: pd.DataFrame
) -> tuple[list[str], str, Callable[[], DataFrame], tuple[datetime, datetime]]:
    columns = [str(c) for c in entity_df.columns]
    datetimes = [c for c in columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])]
    ts_col = _timestamp_column(columns, datetimes)
    frame = entity_df.copy(deep=False)
    frame.columns = columns
    try:
        frame[ts_col] = pd.to_datetime(frame[ts_col], utc=True)
    except (ValueError, TypeError) as exc:
        raise EntityDataFrameError(f"entity_df column {ts_col!r} is not a timestamp: {exc}") from exc
    if frame[ts_col].isna().all():
        raise EntityDataFrameError(f"entity_df has no rows with a {ts_col!r} timestamp")
    ts_range = (frame[ts_col].min().to_pydatetime(), frame[ts_col].max().to_pydatetime())
    frame[ROW_ID] = range(len(frame))
    try:
        table = microsecond_timestamps(pa.Table.from_pandas(frame, preserve_index=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise EntityDataFrameError(f"entity_df cannot be converted to Arrow: {exc}".splitlines()[0]) from exc

    if engine.local_files and staging is not None:
        import pyarrow.parquet as pq

        path = staging.new_path("entity") + ".parquet"
        pq.write_table(table, path, compression="none", use_dictionary=False)  # read once, by Sail
        return columns, ts_col, lambda: engine.spark.read.parquet(path), ts_range
    return columns, ts_col, lambda: engine.spark.createDataFrame(table), ts_range


def _timestamp_column(columns: list[str], datetime_columns: list[str]) -> str:
    """Feast's rule: ``event_timestamp`` if present, else the only datetime column."""
    if DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL in columns:
        return DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
    if len(datetime_columns) == 1:
        return datetime_columns[0]
    raise EntityDataFrameError(
        f"entity_df needs an {DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL!r} column "
        f"(or exactly one datetime column; found {datetime_columns or 'none'})"
    )


def check_entity_columns(plans: list[ViewPlan], columns: list[str], ts_col: str) -> None:
    present = set(columns)
    for plan in plans:
        for key in plan.join_keys:
            if key not in present:
                raise EntityDataFrameError(
                    f"entity_df is missing join key column {key!r} needed by feature view {plan.name!r}",
                    hint=f"entity_df has {columns}",
                )
        clash = [out for _, out in plan.features if out in present and out != ts_col]
        if clash:
            raise EntityDataFrameError(
                f"entity_df column {clash[0]!r} has the name of a feature of {plan.name!r}",
                hint="rename the column or pass full_feature_names=True",
            )


def entities_from_sources(
    engine: Engine,
    config: RepoConfig,
    plans: list[ViewPlan],
    versions: dict[str, int | None],
    start: datetime,
    end: datetime,
) -> DataFrame:
    """Date-range mode: every entity seen in ``[start, end]`` in any view, as of ``end``. Entity-less
    views add no entity; with only such views, the one row is ``end`` itself."""
    union: DataFrame | None = None
    if not any(p.join_keys for p in plans):
        return engine.spark.range(1).select(
            F.lit(end).cast("timestamp").alias(DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL)
        )
    for plan in (p for p in plans if p.join_keys):
        frame = read_source(engine.spark, plan.source, config, versions[plan.source.name])
        keys = (
            frame.where(
                (col(plan.timestamp_field) >= F.lit(start)) & (col(plan.timestamp_field) <= F.lit(end))
            )
            .select(*[col(s).alias(k) for s, k in zip(plan.source_keys, plan.join_keys, strict=True)])
            .distinct()
        )
        union = keys if union is None else union.unionByName(keys, allowMissingColumns=True)
    assert union is not None
    return union.distinct().withColumn(DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL, F.lit(end).cast("timestamp"))
