"""Feast's pulls from the Delta store (``pull_latest_from_table_or_query``, ``pull_all_from_table_or_query``):
one source's rows in a time range, optionally the latest per key with the point-in-time join's
tie-break.
"""

from __future__ import annotations

from datetime import datetime

from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL
from feast.repo_config import RepoConfig
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fs_platform.errors import SchemaMismatchError
from fs_platform.plugins.delta import pit_join
from fs_platform.plugins.delta.engine import get_engine
from fs_platform.plugins.delta.job import DeltaRetrievalJob, Staging
from fs_platform.plugins.delta.retrieval import col
from fs_platform.plugins.delta.source_checks import delta_source
from fs_platform.plugins.delta.tables import open_table, read_source, schema_of
from fs_platform.plugins.delta.version_pins import current_pins
from fs_platform.timeutil import parse_time


def pull(
    config: RepoConfig,
    data_source: DataSource,
    join_key_columns: list[str],
    feature_name_columns: list[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    start_date: datetime | None,
    end_date: datetime | None,
    *,
    latest: bool,
) -> DeltaRetrievalJob:
    """Rows of one source in ``[start_date, end_date]`` (inclusive), optionally the latest per key."""
    source = delta_source(data_source)
    engine = get_engine(config)
    version = current_pins().get(source.name, source.version)
    if not source.table:
        table = open_table(source, config, version)
        version = table.version()
        columns = dict(schema_of(table))
        missing = [c for c in feature_name_columns if c not in columns]
        if missing:  # an aggregation view's features are computed, not stored: Feast cannot pull them
            raise SchemaMismatchError(
                f"source {source.name!r} has no column {missing[0]!r} to pull (has {sorted(columns)})",
                hint="an aggregation view (fs.aggregation) is materialized with `fs materialize`, which "
                "rebuilds its tiles from the raw events",
            )
    start, end = (
        (parse_time(start_date) if start_date else None),
        (parse_time(end_date) if end_date else None),
    )

    def build() -> DataFrame:
        frame = read_source(engine.spark, source, config, version)
        if source.date_partition_column:
            if start is not None:
                frame = frame.where(col(source.date_partition_column) >= F.lit(start.date().isoformat()))
            if end is not None:
                frame = frame.where(col(source.date_partition_column) <= F.lit(end.date().isoformat()))
        ts = col(timestamp_field)
        if start is not None:
            frame = frame.where(ts >= F.lit(start))
        if end is not None:
            frame = frame.where(ts <= F.lit(end))
        dtypes = dict(frame.dtypes) if latest else {}
        names = [*join_key_columns, *feature_name_columns, timestamp_field]
        if created_timestamp_column:
            names.append(created_timestamp_column)
        # Source column names, as Feast's stores return them: its engines (and ours) apply the
        # source's field_mapping to the result themselves.
        rows = frame.select(*[col(n) for n in dict.fromkeys(names)])
        if latest:
            order = [col(timestamp_field).desc()]
            if created_timestamp_column:
                order.append(col(created_timestamp_column).desc_nulls_last())
            # The point-in-time join's last tie-break, so online gets the row training sees.
            hashable = [c for c in feature_name_columns if "map<" not in dtypes.get(c, "")]
            rows = rows.withColumn("__fs_tie", pit_join.tie_hash(hashable))
            order.append(col("__fs_tie").desc())
            window = Window.partitionBy(*[col(k) for k in join_key_columns]).orderBy(*order)
            rows = rows.withColumn("__fs_rank", F.row_number().over(window)).where("__fs_rank = 1")
            rows = rows.drop("__fs_rank", "__fs_tie")
        if not join_key_columns:
            rows = rows.withColumn(DUMMY_ENTITY_ID, F.lit(DUMMY_ENTITY_VAL))
        return rows

    staging = Staging(config.offline_store.staging_dir) if engine.local_files else None
    return DeltaRetrievalJob(
        engine, build, staging, source_versions={source.name: version}, repo_config=config
    )
