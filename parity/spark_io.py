"""Spark plumbing shared by sampling and expected-value computation: one pinned Delta version per
view, key tables in, Arrow results out (through the offline store's own result path)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fs_platform.aggregation.spec import is_aggregation, spec_of
from fs_platform.errors import OfflineStoreError, SchemaMismatchError
from fs_platform.parity.targets import Target
from fs_platform.plugins.delta.engine import Engine
from fs_platform.plugins.delta.job import DeltaRetrievalJob, Staging
from fs_platform.plugins.delta.retrieval import ViewPlan, check_schema, plan_view
from fs_platform.plugins.delta.source import DeltaSource
from fs_platform.plugins.delta.tables import delta_schema, open_table, read_source


@dataclass(frozen=True)
class ViewSource:
    """A target's Delta source read at one version, so sampling and expectation see the same data."""

    target: Target
    plan: ViewPlan
    version: int | None  # None for catalog tables


def view_source(target: Target, config) -> ViewSource:
    source = target.view.batch_source
    if not isinstance(source, DeltaSource):
        raise OfflineStoreError(
            f"feature view {target.name!r} reads {type(source).__name__}; "
            "parity needs a DeltaSource batch source"
        )
    plan = plan_view(target.view, list(target.features), full_feature_names=False)
    version = None if source.table else open_table(source, config).version()
    # The same schema contract as training retrievals: a view the offline store rejects is an error here too.
    if is_aggregation(target.view):  # its source holds raw events: the spec's columns, not the features
        missing = spec_of(target.view).missing_columns(dict(delta_schema(source, config)))
        if missing:
            raise SchemaMismatchError(
                f"aggregation view {target.name!r}: the events table of {source.name!r} "
                f"lacks column(s) {', '.join(missing)}"
            )
    else:
        check_schema(target.view, plan, dict(delta_schema(source, config)))
    if not plan.join_keys:  # entity-less: its one key is Feast's dummy key (``read`` adds the column)
        plan = replace(plan, join_keys=(DUMMY_ENTITY_ID,), source_keys=(DUMMY_ENTITY_ID,))
    return ViewSource(target, plan, version)


class SparkIO:
    """The engine plus one private staging folder that lives as long as this object (one check)."""

    def __init__(self, engine: Engine, config):
        self.engine = engine
        self.config = config
        self.staging = Staging(config.offline_store.staging_dir) if engine.local_files else None

    def read(self, src: ViewSource) -> DataFrame:
        frame = read_source(self.engine.spark, src.plan.source, self.config, src.version)
        if src.plan.source_keys == (DUMMY_ENTITY_ID,) and DUMMY_ENTITY_ID not in frame.columns:
            frame = frame.withColumn(DUMMY_ENTITY_ID, F.lit(DUMMY_ENTITY_VAL))  # what materialization writes
        return frame

    def collect(self, frame: DataFrame, column_types: dict[str, pa.DataType] | None = None) -> pa.Table:
        """The frame as Arrow (local engines exchange parquet files, remote ones stream)."""
        return DeltaRetrievalJob(
            self.engine, lambda: frame, self.staging, column_types=column_types
        ).to_arrow()

    def upload(self, table: pa.Table) -> DataFrame:
        """An Arrow table (entity keys) as a Spark frame; via a parquet file when Spark shares our disk."""
        if self.staging is None:
            return self.engine.spark.createDataFrame(table)
        import pyarrow.parquet as pq

        path = self.staging.new_path("keys") + ".parquet"
        pq.write_table(table, path)
        return self.engine.spark.read.parquet(path)
