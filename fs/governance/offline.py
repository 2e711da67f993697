"""Reading a feature view's offline rows straight from its Delta table (delta-rs, no Spark).

Validation, drift and freshness only scan one view's own table over a time window, so a Spark
round trip (and its ~200k rows/s Connect channel) would be pure overhead here.

An aggregation view (docs/aggregations.md) stores no feature rows: its source table holds the raw
events, which ``newest_event_time`` reads (the newest event its values can reflect), but
``read_window`` refuses it rather than pass raw events off as feature values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import RepoError
from fs_platform.field_mapping import to_mapped_names
from fs_platform.views import feature_view


@dataclass(frozen=True)
class ViewSource:
    """Where a view's offline rows live and which columns matter."""

    view: object  # feast FeatureView
    source: object  # plugins.delta.DeltaSource
    timestamp_field: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]


def view_source(store, name: str) -> ViewSource:
    from fs_platform.plugins.delta import DeltaSource

    view = feature_view(store, name)
    source = view.batch_source
    if not isinstance(source, DeltaSource):
        raise RepoError(
            f"feature view {name!r} reads {type(source).__name__}; only DeltaSource is supported here"
        )
    return ViewSource(
        view=view,
        source=source,
        timestamp_field=source.timestamp_field,
        join_keys=tuple(c.name for c in view.entity_columns),
        features=tuple(f.name for f in view.features),
    )


def read_window(store, name: str, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
    """The view's rows with event time in ``[start, end)`` (either bound optional), columns renamed
    to feature names via the source's ``field_mapping``. ``RepoError`` for an aggregation view."""
    from fs_platform.plugins.delta.tables import open_table

    vs = view_source(store, name)
    if is_aggregation(vs.view):
        raise RepoError(
            f"{name!r} is an aggregation view: its feature values are not stored offline but computed from "
            f"the raw events ({vs.source.path}) at retrieval",
            hint="get them as of chosen times with `get_historical_features` and check that frame with "
            "fs.governance.validate.gate (docs/aggregations.md)",
        )
    table = open_table(vs.source, store.config)
    dataset = table.to_pyarrow_dataset()
    ts_col = vs.timestamp_field
    ts_type = dataset.schema.field(ts_col).type
    flt = None
    for bound, op in ((start, pc.greater_equal), (end, pc.less)):
        if bound is not None:
            expr = op(ds.field(ts_col), pa.scalar(bound, type=ts_type))
            flt = expr if flt is None else flt & expr
    return to_mapped_names(dataset.to_table(filter=flt), vs.source)


def newest_event_time(store, name: str) -> datetime | None:
    """Max event time in the view's Delta table, from the log's per-file stats when present."""
    from fs_platform.plugins.delta.tables import open_table

    vs = view_source(store, name)
    table = open_table(vs.source, store.config)
    actions = table.get_add_actions(flatten=True)
    stat = f"max.{vs.timestamp_field}"
    actions = pa.table(actions) if not isinstance(actions, pa.Table) else actions
    if actions.num_rows == 0:
        return None
    if stat in actions.column_names and actions.column(stat).null_count == 0:
        value = pc.max(actions.column(stat)).as_py()
    else:  # no stats written: scan the one column
        value = pc.max(table.to_pyarrow_dataset().to_table(columns=[vs.timestamp_field]).column(0)).as_py()
    return _utc(value)


def _utc(value):
    from datetime import UTC

    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
