"""``get_historical_features`` of the Delta store: plans the views, checks and pins their sources, and
builds the lazy Spark query (point-in-time join of plain views, aggregation views as of each entity row).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from feast.feature_view import FeatureView
from feast.infra.offline_stores.offline_store import RetrievalMetadata
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.utils import compute_non_entity_date_range
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fs_platform.aggregation.spec import AggregationSpec, spec_of
from fs_platform.errors import OfflineStoreError
from fs_platform.feast_compat import requested_views_to_features
from fs_platform.order import in_order, requested_names
from fs_platform.plugins.delta import pit_join, retrieval
from fs_platform.plugins.delta.aggregation_as_of import as_of
from fs_platform.plugins.delta.engine import get_engine
from fs_platform.plugins.delta.entity_rows import (
    check_entity_columns,
    entities,
    entities_from_sources,
    entity_key_types,
)
from fs_platform.plugins.delta.job import DeltaRetrievalJob, Staging
from fs_platform.plugins.delta.retrieval import ROW_ID, ViewPlan, col
from fs_platform.plugins.delta.source_checks import check_sources
from fs_platform.plugins.delta.tables import read_source
from fs_platform.timeutil import epoch_micros


def historical_features(
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
    """``DeltaOfflineStore.get_historical_features`` (see docs/offline_store.md)."""
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
    versions = check_sources(config, engine, view_features, plans)
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
            return entities_from_sources(engine, config, plans, versions, start, end)

        prune_range = (end, end)
    else:
        key_types = entity_key_types(view_features)
        entity_columns, ts_col, load_entities, ts_range = entities(engine, staging, entity_df, key_types)
        check_entity_columns(plans, entity_columns, ts_col)
        prune_range = ts_range

    order = requested_names(feature_refs, full_feature_names)  # Feast groups them per view

    def build() -> DataFrame:
        frames = {p.name: read_source(engine.spark, p.source, config, versions[p.source.name]) for p in plans}
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
