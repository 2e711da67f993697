"""A topic's message field types: declared in ``ingest.yaml`` or taken from the views it feeds, and
the Arrow type each becomes."""

from __future__ import annotations

import pyarrow as pa
from feast import FeatureView
from feast.value_type import ValueType

from fs_platform.plugins.kafka_ingest.config import FieldType

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    "int": pa.int64(),
    "int32": pa.int32(),
    "float": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_FIELD_TYPES: dict[ValueType, FieldType] = {
    ValueType.INT32: "int32",
    ValueType.INT64: "int",
    ValueType.FLOAT: "float",
    ValueType.DOUBLE: "float",
    ValueType.STRING: "string",
    ValueType.BOOL: "bool",
    ValueType.UNIX_TIMESTAMP: "timestamp",
}


def view_fields(views: list[FeatureView], event_time_field: str) -> dict[str, FieldType]:
    """Message fields required when a topic carries feature rows as is (no transform)."""
    out: dict[str, FieldType] = {}
    for v in views:
        for f in [*v.entity_columns, *v.features]:
            kind = _FIELD_TYPES.get(f.dtype.to_value_type())
            if kind:
                out.setdefault(f.name, kind)
    out[event_time_field] = "timestamp"
    return out
