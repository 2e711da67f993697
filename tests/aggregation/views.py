"""Aggregation views for tests: keyed by customer_id over raw events (customer_id, amount, approved,
event_timestamp) whose batch source is never read (the tests feed the engines directly)."""

from __future__ import annotations

from feast import Entity, FileSource, PushSource
from feast.value_type import ValueType

from fs_platform.aggregation import aggregation_view

CUSTOMER = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)


def events_view(aggregations, where=None, name: str = "agg"):
    source = FileSource(name="events", path="/nonexistent/events.parquet", timestamp_field="event_timestamp")
    return aggregation_view(
        name=name,
        entities=[CUSTOMER],
        source=PushSource(name="events_push", batch_source=source),
        aggregations=aggregations,
        where=where,
    )
