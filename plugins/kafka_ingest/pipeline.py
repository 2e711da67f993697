"""One topic's path from Kafka records to buffered rows, and its two write buffers.

Per record: decode and validate (``decode.RecordDecoder``), transform (the repo's hook, if any),
append the rows to the online and offline buffers with the (partition, offset) they came from.
Bad records become ``BadRecord``s for the dead-letter topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from feast import FeatureView
from feast.value_type import ValueType

from fs.errors import ConfigError
from plugins.kafka_ingest.config import FieldType, TopicSpec
from plugins.kafka_ingest.decode import BadRecord, RecordDecoder
from plugins.kafka_ingest.sinks import OfflineSink, OnlineSink
from plugins.kafka_ingest.transform import Hook, TransformFactory, load_transform

_FIELD_TYPES: dict[ValueType, FieldType] = {
    ValueType.INT32: "int", ValueType.INT64: "int", ValueType.FLOAT: "float", ValueType.DOUBLE: "float",
    ValueType.STRING: "string", ValueType.BOOL: "bool", ValueType.UNIX_TIMESTAMP: "timestamp",
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


@dataclass
class Buffer:
    """Rows waiting for one target, and the last offset consumed per partition they cover."""

    rows: list[dict] = field(default_factory=list)
    origins: list[tuple] = field(default_factory=list)  # (TopicPartition, offset) per row
    through: dict = field(default_factory=dict)  # TopicPartition -> last offset consumed
    since: float | None = None  # monotonic time of the oldest pending record

    def due(self, max_rows: int, interval_s: float, now: float) -> bool:
        return bool(self.through) and (len(self.rows) >= max_rows or now - self.since >= interval_s)

    def take(self) -> Buffer:
        taken = Buffer(self.rows, self.origins, self.through, self.since)
        self.rows, self.origins, self.through, self.since = [], [], {}, None
        return taken


class TopicPipeline:
    """Decoder, transform, sinks and buffers of one declared topic."""

    def __init__(self, spec: TopicSpec, repo: Path, store, group: str):
        from feast.data_source import PushSource

        self.spec = spec
        try:
            push = store.get_data_source(spec.push_source)
        except Exception as e:  # Feast raises DataSourceObjectNotFoundException
            raise ConfigError(f"topic {spec.topic!r}: push source {spec.push_source!r} is not registered",
                              hint="run `fs apply`, or fix push_source in ingest.yaml") from e
        if not isinstance(push, PushSource):
            raise ConfigError(f"topic {spec.topic!r}: data source {spec.push_source!r} is not a PushSource")
        views = [v for v in store.list_feature_views()
                 if isinstance(v.stream_source, PushSource) and v.stream_source.name == push.name]
        if not views:
            raise ConfigError(f"push source {push.name!r} feeds no feature view", hint="run `fs apply`")
        self.views = views
        self.event_col = push.batch_source.timestamp_field
        self.transform: TransformFactory | None = load_transform(repo, spec.transform) if spec.transform else None
        if not spec.fields and self.transform:
            raise ConfigError(f"topic {spec.topic!r}: a topic with a transform must declare its message fields")
        fields = dict(spec.fields) or view_fields(views, spec.event_time_field)
        self.decoder = RecordDecoder(spec, fields, repo)
        self.join_keys = sorted({k for v in views for k in v.join_keys})
        self.online = OnlineSink(store, views) if spec.online else None
        self.offline = OfflineSink(store.config, push, views, group) if spec.offline else None
        self.online_buffer = Buffer()
        self.offline_buffer = Buffer()

    def new_hook(self) -> Hook | None:
        return self.transform.new() if self.transform else None

    def rows(self, record: dict, hook: Hook | None) -> list[dict]:
        """Feature rows of one validated record; a failing hook or a malformed row is a BadRecord."""
        if hook is None:
            record[self.event_col] = record.pop(self.spec.event_time_field)
            return [record]
        try:
            out = hook(record)
        except Exception as e:  # user code
            raise BadRecord("transform_error", f"transform raised {type(e).__name__}") from None
        rows = [] if out is None else [out] if isinstance(out, dict) else list(out)
        for row in rows:
            if any(row.get(k) is None for k in self.join_keys) or not isinstance(row.get(self.event_col), datetime):
                raise BadRecord("transform_error",
                                f"transform output lacks a join key or a datetime {self.event_col!r}")
        return rows

    def buffer(self, tp, offset: int, rows: list[dict]) -> None:
        now = time.monotonic()
        for buf, on in ((self.online_buffer, self.online), (self.offline_buffer, self.offline)):
            if on is None:
                continue
            if buf.since is None:
                buf.since = now
            buf.rows.extend(rows)
            if buf is self.offline_buffer:
                buf.origins.extend((tp, offset) for _ in rows)
            buf.through[tp] = offset

    def pending(self) -> int:
        return max(len(self.online_buffer.rows), len(self.offline_buffer.rows))

    def clear(self) -> None:
        self.online_buffer = Buffer()
        self.offline_buffer = Buffer()
