"""``DeltaOfflineStore``: Feast's offline store interface over Delta Lake tables, computed with Spark.

Semantics are documented in docs/offline_store.md. Entry points beyond Feast's interface:
:func:`pinned_versions` (replay a retrieval on the Delta versions it read) and
:func:`fs_platform.plugins.delta.engine.use_spark_session` (bring your own SparkSession).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from feast.data_source import DataSource
from feast.feature_logging import LoggingConfig, LoggingSource
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.utils import compute_non_entity_date_range
from feast.value_type import ValueType
from pydantic import ConfigDict
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fs_platform.aggregation.spec import AggregationSpec, spec_of
from fs_platform.entity_keys import error as entity_key_error
from fs_platform.entity_keys import exact_series
from fs_platform.errors import EntityDataFrameError, OfflineStoreError, SchemaMismatchError
from fs_platform.feast_compat import requested_views_to_features
from fs_platform.observability import traced
from fs_platform.order import in_order, requested_names
from fs_platform.plugins.delta import pit_join, retrieval
from fs_platform.plugins.delta.aggregation_as_of import as_of
from fs_platform.plugins.delta.engine import Engine, get_engine
from fs_platform.plugins.delta.job import DeltaRetrievalJob, Staging
from fs_platform.plugins.delta.keys import cast_keys, exact_keys
from fs_platform.plugins.delta.retrieval import ROW_ID, ViewPlan, col
from fs_platform.plugins.delta.source import DeltaSource
from fs_platform.plugins.delta.storage import DeltaLoggingDestination, append, write_logs
from fs_platform.plugins.delta.tables import delta_schema, open_table, read_source, schema_of
from fs_platform.timeutil import epoch_micros, microsecond_timestamps

logger = logging.getLogger(__name__)

_version_pins: contextvars.ContextVar[Mapping[str, int | None] | None] = contextvars.ContextVar(
    "delta_version_pins", default=None
)


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


@contextlib.contextmanager
def pinned_versions(versions: Mapping[str, int | None]) -> Iterator[None]:
    """Read the named sources at these Delta versions inside the block (reproducible training sets).

    ``versions`` is ``job.source_versions`` of an earlier retrieval, or
    ``fs_platform.plugins.delta.storage.recorded_source_versions(saved_dataset.storage)``.
    """
    token = _version_pins.set({**(_version_pins.get() or {}), **versions})
    try:
        yield
    finally:
        _version_pins.reset(token)


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
        engine = get_engine(config)
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        view_features, _ = requested_views_to_features(feature_refs, feature_views, odfvs)
        plans = [retrieval.plan_view(v, f, full_feature_names) for v, f in view_features.items()]
        # Aggregation views (fs.aggregation): computed from their raw events as of each entity row.
        specs = {p.name: spec for v, p in zip(view_features, plans, strict=True) if (spec := spec_of(v))}
        aggregated = {
            p.name: _aggregation_keys(v, specs[p.name])
            for v, p in zip(view_features, plans, strict=True)
            if p.name in specs
        }
        versions = _check_sources(config, engine, view_features, plans)
        staging = Staging(config.offline_store.staging_dir) if engine.local_files else None

        if entity_df is None and specs:
            raise OfflineStoreError(
                f"aggregation view {next(iter(specs))!r} needs entity rows: date-range retrieval "
                "(entity_df=None) is not supported for aggregation views",
                hint="pass an entity_df with the join keys and the request timestamps",
            )
        if entity_df is None:
            start, end = compute_non_entity_date_range(
                list(view_features), start_date=kwargs.get("start_date"), end_date=kwargs.get("end_date")
            )
            ts_col, ts_range = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL, (start, end)
            keys = list(dict.fromkeys(k for p in plans for k in p.join_keys))
            entity_columns = [*keys, ts_col]

            def load_entities() -> DataFrame:
                return _entities_from_sources(engine, config, plans, versions, start, end)

            prune_range = (end, end)
        else:
            key_types = _key_types(view_features)
            entity_columns, ts_col, load_entities, ts_range = _entities(engine, staging, entity_df, key_types)
            _check_entity_columns(plans, entity_columns, ts_col)
            prune_range = ts_range

        order = requested_names(feature_refs, full_feature_names)  # Feast groups them per view

        def build() -> DataFrame:
            frames = {
                p.name: read_source(engine.spark, p.source, config, versions[p.source.name]) for p in plans
            }
            entity = load_entities()
            plain = [p for p in plans if p.name not in specs]
            joined = pit_join.point_in_time_join(
                entity, ts_col, plain, frames, prune_range, filter_by_created_timestamp
            )
            for plan in plans:
                if plan.name in specs:
                    spec = specs[plan.name]
                    events = _aggregation_events(frames[plan.name], plan, spec, prune_range)
                    joined = as_of(
                        joined,
                        ts_col,
                        aggregated[plan.name],
                        spec,
                        events,
                        dict(plan.features),
                        partitions=engine.partitions,
                    )
            outputs = in_order([out for p in plans for _, out in p.features], order)
            extra = [ROW_ID] if ROW_ID in entity.columns else []
            return joined.select(*[col(c) for c in [*entity_columns, *outputs, *extra]])

        return DeltaRetrievalJob(
            engine,
            build,
            staging,
            full_feature_names=full_feature_names,
            on_demand_feature_views=odfvs,
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=[c for c in entity_columns if c != ts_col],
                min_event_timestamp=ts_range[0],
                max_event_timestamp=ts_range[1],
            ),
            source_versions=versions,
            column_types=retrieval.typed_schema(plans),
            column_owners=retrieval.output_owners(plans),
            repo_config=config,
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
        return _pull(
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
        return _pull(
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
        source = _delta_source(feature_view.batch_source, feature_view.name)
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
        delta_schema(_delta_source(data_source), config)

    @staticmethod
    def get_table_column_names_and_types_from_data_source(
        config: RepoConfig, data_source: DataSource
    ) -> Iterable[tuple[str, str]]:
        return delta_schema(_delta_source(data_source), config)


# -- helpers ---------------------------------------------------------------------------------------


def _delta_source(source: Any, view: str | None = None) -> DeltaSource:
    if isinstance(source, DeltaSource):
        return source
    where = f"feature view {view!r}" if view else f"source {getattr(source, 'name', source)!r}"
    raise OfflineStoreError(
        f"{where} uses {type(source).__name__}; the Delta offline store needs a DeltaSource"
    )


def _check_sources(
    config: RepoConfig, engine: Engine, view_features: dict, plans: list[ViewPlan]
) -> dict[str, int | None]:
    """Resolve the Delta version each source is read at and check each view against its schema."""
    pins = _version_pins.get() or {}
    versions: dict[str, int | None] = {}
    for view, plan in zip(view_features, plans, strict=True):
        source = _delta_source(view.batch_source, view.name)
        if source.table:
            columns = dict(delta_schema(source, config))
            versions[source.name] = pins.get(source.name, source.version)
        else:
            table = open_table(source, config, pins.get(source.name))
            columns = dict(schema_of(table))
            versions[source.name] = table.version()
        spec = spec_of(view)
        if spec is None:
            retrieval.check_schema(view, plan, columns)
        else:
            _check_aggregation_schema(view, source, spec, columns)
    return versions


def _check_aggregation_schema(
    view: FeatureView, source: DeltaSource, spec: AggregationSpec, columns: dict
) -> None:
    """An aggregation view's features are not columns: its raw events need the keys, the event time
    and every column the spec's inputs and filter read."""
    where = f"aggregation view {view.name!r} (source {source.name!r})"
    missing = spec.missing_columns(columns)
    if missing:
        raise SchemaMismatchError(
            f"{where}: column {missing[0]!r} is missing from the raw events' Delta table (has {sorted(columns)})"
        )
    if columns[spec.timestamp_field] not in ("timestamp", "date"):
        raise SchemaMismatchError(
            f"{where}: {spec.timestamp_field!r} is {columns[spec.timestamp_field]}, expected a timestamp"
        )


def _aggregation_keys(view: FeatureView, spec: AggregationSpec) -> list[str]:
    """The entity-frame columns holding the spec's join keys (a projection may rename them)."""
    return [view.projection.join_key_map.get(k, k) for k in spec.join_keys]


def _aggregation_events(
    frame: DataFrame, plan: ViewPlan, spec: AggregationSpec, ts_range: tuple[datetime, datetime]
) -> DataFrame:
    """The raw events that can count for entity times in ``ts_range``: event times in
    ``[min - (longest window + its tile), max]`` (whole date partitions pruned first)."""
    lower = ts_range[0] - timedelta(microseconds=spec.horizon_us)
    upper = ts_range[1]
    if plan.date_partition_column:
        frame = frame.where(col(plan.date_partition_column) >= F.lit(lower.date().isoformat()))
        frame = frame.where(col(plan.date_partition_column) <= F.lit(upper.date().isoformat()))
    ts = col(spec.timestamp_field).cast("timestamp")
    return frame.where((F.unix_micros(ts) >= F.lit(epoch_micros(lower))) & (ts <= F.lit(upper)))


def _key_types(view_features: dict) -> dict[str, ValueType]:
    """Entity-frame column -> the join key's type, for the views of a retrieval (entity-less: none)."""
    kinds: dict[str, ValueType] = {}
    for view in view_features:
        for c in view.entity_columns:
            if c.name != DUMMY_ENTITY_ID:
                kinds.setdefault(view.projection.join_key_map.get(c.name, c.name), c.dtype.to_value_type())
    return kinds


def _entities(
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
    ts_range = (_utc(low), _utc(high))
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


def _check_entity_columns(plans: list[ViewPlan], columns: list[str], ts_col: str) -> None:
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


def _entities_from_sources(
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


def _pull(
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
    source = _delta_source(data_source)
    engine = get_engine(config)
    version = (_version_pins.get() or {}).get(source.name, source.version)
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
    start, end = (_utc(start_date) if start_date else None), (_utc(end_date) if end_date else None)

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


def _utc(value: datetime) -> datetime:
    """Naive datetimes are UTC (Feast's convention); aware ones are converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
