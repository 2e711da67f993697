"""What retrieval reads from each feature view (``ViewPlan``: keys, timestamps, features, TTL, the tie-break
columns), checked against the view's Delta table, and how results are typed. The join itself is
:mod:`fs_platform.plugins.delta.pit_join`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_NAME, FeatureView
from feast.type_map import feast_value_type_to_pa
from pyspark.sql import functions as F

from fs_platform.casts import castable
from fs_platform.errors import RepoError, SchemaMismatchError
from fs_platform.field_mapping import source_column
from fs_platform.plugins.delta.source import DeltaSource

ROW_ID = "__fs_row"


def col(name: str):
    """A column by exact name (dots and spaces in names are not struct access)."""
    return F.col(f"`{name}`")


@dataclass(frozen=True)
class ViewPlan:
    """What one feature view contributes to a retrieval, in source and output column names."""

    name: str  # projection name (the prefix of full feature names)
    source: DeltaSource
    join_keys: tuple[str, ...]  # entity-frame column names
    source_keys: tuple[str, ...]  # matching source columns
    timestamp_field: str
    created_timestamp_column: str | None
    features: tuple[tuple[str, str], ...]  # (source column, output column)
    output_types: tuple[tuple[str, pa.DataType], ...]  # output column -> Arrow type of the feature schema
    ttl: timedelta | None  # None = unbounded
    date_partition_column: str | None
    tie_columns: tuple[str, ...]  # source columns of all the view's features (not just those requested)
    feature_names: tuple[str, ...] = ()  # the requested features' names, in ``features`` order


def plan_view(view: FeatureView, features: list[str], full_feature_names: bool) -> ViewPlan:
    """Translate a Feast feature view + requested feature names into source/output column names."""
    source = view.batch_source
    if view.entities and view.entities != [DUMMY_ENTITY_NAME] and not view.entity_columns:
        # Feast fills entity_columns at apply; an unapplied view would silently join on nothing.
        raise RepoError(f"feature view {view.name!r} has no entity columns", hint="run `fs apply` first")
    join_keys, source_keys = [], []
    # An entity-less view (Feast's dummy entity) has no key columns: every entity row gets its rows.
    for entity_column in (c for c in view.entity_columns if c.name != DUMMY_ENTITY_ID):
        join_keys.append(view.projection.join_key_map.get(entity_column.name, entity_column.name))
        source_keys.append(source_column(source, entity_column.name))
    prefix = view.projection.name_to_use()
    fields = {f.name: f for f in view.features}
    outputs = [(f"{prefix}__{f}" if full_feature_names else f) for f in features]
    ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
    created = source.created_timestamp_column
    return ViewPlan(
        name=prefix,
        source=source,
        join_keys=tuple(join_keys),
        source_keys=tuple(source_keys),
        timestamp_field=source_column(source, source.timestamp_field),
        created_timestamp_column=source_column(source, created) if created else None,
        features=tuple((source_column(source, f), out) for f, out in zip(features, outputs, strict=True)),
        output_types=tuple(
            (out, feast_value_type_to_pa(fields[f].dtype.to_value_type()))
            for f, out in zip(features, outputs, strict=True)
        ),
        ttl=ttl,
        date_partition_column=source.date_partition_column or None,
        tie_columns=tuple(
            source_column(source, f.name)
            for f in view.features
            if not _has_map(feast_value_type_to_pa(f.dtype.to_value_type()))
        ),
        feature_names=tuple(features),
    )


_COMPATIBLE = {
    # Feast value type name -> Delta/Spark types that read back into it. Numeric types are decided by
    # fs.casts.castable (any number, cast to the declared type with a check that every value fits).
    "STRING": {"string"},
    "BOOL": {"boolean"},
    "BYTES": {"binary"},
    "UNIX_TIMESTAMP": {"timestamp", "date"},
}


def check_schema(view: FeatureView, plan: ViewPlan, columns: dict[str, str]) -> None:
    """Raise ``SchemaMismatchError`` naming the first view column the Delta table cannot serve."""
    problems = schema_problems(view, plan, columns)
    if problems:
        raise SchemaMismatchError(problems[0])


def schema_problems(view: FeatureView, plan: ViewPlan, columns: dict[str, str]) -> list[str]:
    """Every view column the Delta table (``column -> Spark simple type``) cannot serve, one line
    each; empty when it fits. Missing or mistyped keys and timestamps are reported without the
    features (nothing can be read without them). ``fs apply`` and backfills report them all."""
    where = f"feature view {view.name!r} (source {plan.source.name!r})"
    needed = [*plan.source_keys, plan.timestamp_field]
    if plan.created_timestamp_column:
        needed.append(plan.created_timestamp_column)
    problems = [
        f"{where}: column {name!r} is missing from the Delta table (has {sorted(columns)})"
        for name in needed
        if name not in columns
    ]
    if problems:
        return problems
    for name in (plan.timestamp_field, plan.created_timestamp_column):
        if name and columns[name] not in ("timestamp", "date"):
            problems.append(f"{where}: {name!r} is {columns[name]}, expected a timestamp")
    if problems:
        return problems
    fields = {f.name: f for f in view.features}
    for feature, field in fields.items():
        column = source_column(plan.source, feature)
        if column not in columns:
            problems.append(f"{where}: feature {feature!r} has no Delta column {column!r}")
            continue
        expected = field.dtype.to_value_type().name
        actual = columns[column]
        base = "decimal" if actual.startswith("decimal") else actual
        numeric = castable(expected, actual)  # numbers cast to the declared type, checked (fs.casts)
        if (
            numeric is False
            or (numeric is None and expected in _COMPATIBLE and base not in _COMPATIBLE[expected])
            or (expected.endswith("_LIST") and not actual.startswith("array<"))
        ):
            problems.append(
                f"{where}: feature {feature!r} is {field.dtype} in the view but {actual} in Delta"
            )
    return problems


def _has_map(kind: pa.DataType) -> bool:
    return pa.types.is_map(kind) or any(_has_map(kind.field(i).type) for i in range(kind.num_fields))


def typed_schema(plans: list[ViewPlan]) -> dict[str, Any]:
    """Output column -> Arrow type, for casting results to the feature views' declared types."""
    return {out: t for plan in plans for out, t in plan.output_types}


def output_owners(plans: list[ViewPlan]) -> dict[str, tuple[str, str]]:
    """Output column -> (view, feature), to name them when a value does not fit its declared type."""
    return {
        out: (plan.name, feature)
        for plan in plans
        for (_, out), feature in zip(plan.features, plan.feature_names, strict=True)
    }
