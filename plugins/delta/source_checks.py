"""The sources of a retrieval: each view's ``DeltaSource``, the Delta version it is read at, and its
table checked against the view (a plain view's columns, or an aggregation view's raw events).
"""

from __future__ import annotations

from typing import Any

from feast.feature_view import FeatureView
from feast.repo_config import RepoConfig

from fs_platform.aggregation.spec import AggregationSpec, spec_of
from fs_platform.errors import OfflineStoreError, SchemaMismatchError
from fs_platform.plugins.delta import retrieval
from fs_platform.plugins.delta.engine import Engine
from fs_platform.plugins.delta.retrieval import ViewPlan
from fs_platform.plugins.delta.source import DeltaSource
from fs_platform.plugins.delta.tables import delta_schema, open_table, schema_of
from fs_platform.plugins.delta.version_pins import current_pins


def delta_source(source: Any, view: str | None = None) -> DeltaSource:
    if isinstance(source, DeltaSource):
        return source
    where = f"feature view {view!r}" if view else f"source {getattr(source, 'name', source)!r}"
    raise OfflineStoreError(
        f"{where} uses {type(source).__name__}; the Delta offline store needs a DeltaSource"
    )


def check_sources(
    config: RepoConfig, engine: Engine, view_features: dict, plans: list[ViewPlan]
) -> dict[str, int | None]:
    """Resolve the Delta version each source is read at and check each view against its schema."""
    pins = current_pins()
    versions: dict[str, int | None] = {}
    for view, plan in zip(view_features, plans, strict=True):
        source = delta_source(view.batch_source, view.name)
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
            check_aggregation_schema(view, source, spec, columns)
    return versions


def check_aggregation_schema(
    view: FeatureView, source: DeltaSource, spec: AggregationSpec, columns: dict
) -> None:
    """An aggregation view's features are not columns: its raw events need the keys, the event time
    and every column the spec's inputs and filter read."""
    where = f"aggregation view {view.name!r} (source {source.name!r})"
    missing = spec.missing_columns(columns)
    if missing:
        raise SchemaMismatchError(
            f"{where}: column {missing[0]!r} is missing from the raw events' Delta table "
            f"(has {sorted(columns)})"
        )
    if columns[spec.timestamp_field] not in ("timestamp", "date"):
        raise SchemaMismatchError(
            f"{where}: {spec.timestamp_field!r} is {columns[spec.timestamp_field]}, expected a timestamp"
        )
