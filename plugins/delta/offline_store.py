"""``DeltaOfflineStore``: Feast's offline store interface over Delta Lake tables, computed with Spark.

Semantics are documented in docs/offline_store.md. The work is in
:mod:`~fs_platform.plugins.delta.historical_retrieval` (``get_historical_features``) and
:mod:`~fs_platform.plugins.delta.pull` (the pulls). Entry points beyond Feast's interface:
:func:`fs_platform.plugins.delta.version_pins.pinned_versions` (replay a retrieval on the Delta versions
it read) and :func:`fs_platform.plugins.delta.engine.use_spark_session` (bring your own SparkSession).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from feast.data_source import DataSource
from feast.feature_logging import LoggingConfig, LoggingSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores.offline_store import OfflineStore
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import ConfigDict
from pyspark.sql import DataFrame

from fs_platform.errors import OfflineStoreError
from fs_platform.observability import traced
from fs_platform.plugins.delta.historical_retrieval import historical_features
from fs_platform.plugins.delta.job import DeltaRetrievalJob
from fs_platform.plugins.delta.pull import pull
from fs_platform.plugins.delta.source_checks import delta_source
from fs_platform.plugins.delta.storage import DeltaLoggingDestination, append, write_logs
from fs_platform.plugins.delta.tables import delta_schema
from fs_platform.timeutil import microsecond_timestamps


class DeltaOfflineStoreConfig(FeastConfigBaseModel):
    """``offline_store:`` section of feature_store.yaml for the Delta store."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["fs_platform.plugins.delta.offline_store.DeltaOfflineStore"] = (
        "fs_platform.plugins.delta.offline_store.DeltaOfflineStore"
    )
    """Offline store type selector."""

    spark_remote: str | None = None
    """Spark Connect URL (``sc://host:15002``, Databricks Connect); unset = embedded Sail in this process."""

    spark_conf: dict[str, str] = {}
    """Spark settings applied to the session as given (``spark.sql.shuffle.partitions``, ...)."""

    staging_dir: str | None = None
    """Folder for temporary parquet exchanged with a local engine; unset = the system temp folder."""


class DeltaOfflineStore(OfflineStore):
    """Point-in-time joins, pulls and writes over Delta tables (see docs/offline_store.md)."""

    supports_filter_by_created_timestamp = True

    @staticmethod
    @traced(
        "fs.retrieval.historical",
        lambda feature_views, feature_refs, entity_df, **_: {
            "views": ",".join(v.name for v in feature_views),
            "features": len(feature_refs),
            "entity_df": "none"
            if entity_df is None
            else "sql"
            if isinstance(entity_df, str)
            else type(entity_df).__name__,
        },
    )
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | DataFrame | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> DeltaRetrievalJob:
        return historical_features(
            config,
            feature_views,
            feature_refs,
            entity_df,
            registry,
            project,
            full_feature_names,
            filter_by_created_timestamp,
            **kwargs,
        )

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> DeltaRetrievalJob:
        return pull(
            config,
            data_source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
            latest=True,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> DeltaRetrievalJob:
        return pull(
            config,
            data_source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
            latest=False,
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        source = delta_source(feature_view.batch_source, feature_view.name)
        append(source, microsecond_timestamps(table), config)
        if progress:
            progress(table.num_rows)

    @staticmethod
    def write_logged_features(
        config: RepoConfig,
        data: pa.Table | Any,
        source: LoggingSource,
        logging_config: LoggingConfig,
        registry: BaseRegistry,
    ) -> None:
        destination = logging_config.destination
        if not isinstance(destination, DeltaLoggingDestination):
            raise OfflineStoreError(
                f"feature logging with the Delta store needs a DeltaLoggingDestination, "
                f"got {type(destination).__name__}"
            )
        write_logs(data, destination, config)

    @staticmethod
    def validate_data_source(config: RepoConfig, data_source: DataSource) -> None:
        delta_schema(delta_source(data_source), config)

    @staticmethod
    def get_table_column_names_and_types_from_data_source(
        config: RepoConfig, data_source: DataSource
    ) -> Iterable[tuple[str, str]]:
        return delta_schema(delta_source(data_source), config)
