"""One topic's path from Kafka records to buffered rows (its two write buffers: ``buffers.py``).

Per poll batch: decode and validate (``decode.RecordDecoder.decode_batch``), transform (the repo's
hook: its ``batch`` method when it has one, else per record), and append the rows as one Arrow
table to the online and offline buffers with the Kafka offset each row came from. Bad records
become ``BadRecord``s for the dead-letter topic.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from fs_platform.aggregation.spec import spec_of
from fs_platform.errors import ConfigError, IngestError
from fs_platform.plugins.kafka_ingest import batch_rows
from fs_platform.plugins.kafka_ingest.buffers import Buffer, Chunk
from fs_platform.plugins.kafka_ingest.config import FieldType, TopicSpec
from fs_platform.plugins.kafka_ingest.decode import BadRecord, RecordDecoder
from fs_platform.plugins.kafka_ingest.fields import ARROW_TYPES, view_fields
from fs_platform.plugins.kafka_ingest.quality_gates import gate_rejection, quality_gates
from fs_platform.plugins.kafka_ingest.sinks import (
    EventSink,
    OfflineSink,
    OnlineSink,
    created_column,
    row_schema,
)
from fs_platform.plugins.kafka_ingest.transform import Hook, TransformFactory, load_transform


class TopicPipeline:
    """Decoder, transform, sinks and buffers of one declared topic."""

    def __init__(self, spec: TopicSpec, repo: Path, store, group: str):
        from feast.data_source import PushSource

        self.spec = spec
        try:
            push = store.get_data_source(spec.push_source)
        except Exception as e:  # Feast raises DataSourceObjectNotFoundException
            raise ConfigError(
                f"topic {spec.topic!r}: push source {spec.push_source!r} is not registered",
                hint="run `fs apply`, or fix push_source in ingest.yaml",
            ) from e
        if not isinstance(push, PushSource):
            raise ConfigError(f"topic {spec.topic!r}: data source {spec.push_source!r} is not a PushSource")
        views = [
            v
            for v in store.list_feature_views()
            if isinstance(v.stream_source, PushSource) and v.stream_source.name == push.name
        ]
        if not views:
            raise ConfigError(f"push source {push.name!r} feeds no feature view", hint="run `fs apply`")
        self.views = views
        self.event_col = push.batch_source.timestamp_field
        self.transform: TransformFactory | None = (
            load_transform(repo, spec.transform) if spec.transform else None
        )
        if not spec.fields and self.transform:
            raise ConfigError(
                f"topic {spec.topic!r}: a topic with a transform must declare its message fields"
            )
        specs = [spec_of(v) for v in views]
        self.aggregating = any(specs)
        self.lateness_us: int | None = None
        fields = dict(spec.fields) or view_fields(views, spec.event_time_field)
        self.decoder = RecordDecoder(spec, fields, repo)
        self.join_keys = sorted({k for v in views for k in v.join_keys})
        self._inputs = [f for f in fields if f != spec.event_time_field]
        if self.aggregating:
            self._check_aggregating(specs, fields)
            # Raw events: the declared fields, the event time under the batch source's name.
            self.created_col = push.batch_source.created_timestamp_column or None
            self.schema = pa.schema(
                [pa.field(n, ARROW_TYPES[t]) for n, t in fields.items() if n != spec.event_time_field]
                + [pa.field(self.event_col, ARROW_TYPES["timestamp"])]
                + ([pa.field(self.created_col, ARROW_TYPES["timestamp"])] if self.created_col else [])
            )
            self.lateness_us = min(s.allowed_lateness_us for s in specs)
            self.online = EventSink(store, views, self.event_col) if spec.online else None
            self.offline = (
                OfflineSink(store.config, push, views, group, schema=self.schema) if spec.offline else None
            )
        else:
            self.created_col = created_column(push.batch_source)
            self.schema = row_schema(views, self.event_col, self.created_col)
            self.online = OnlineSink(store, views) if spec.online else None
            self.offline = OfflineSink(store.config, push, views, group) if spec.offline else None
        self.key_field = self._key_field(fields)
        self.online_buffer = Buffer()
        self.offline_buffer = Buffer()
        self.gates = quality_gates(repo, views) if spec.quality_gate else []
        self._store = store

    def _key_field(self, fields: dict[str, FieldType]) -> str:
        """The field the Kafka key must equal: declared, else the fed views' only join key."""
        topic, name = self.spec.topic, self.spec.key_field
        if name is None:
            if len(self.join_keys) != 1:
                raise ConfigError(
                    f"topic {topic!r} feeds views keyed by {', '.join(self.join_keys)}: say which one its "
                    "producers key records by",
                    hint="set key_field in ingest.yaml",
                )
            name = self.join_keys[0]
        if name not in fields:
            raise ConfigError(
                f"topic {topic!r}: key_field {name!r} is not among its message fields",
                hint="declare it under fields, or set key_field in ingest.yaml",
            )
        return name

    def _check_aggregating(self, specs: list, fields: dict[str, FieldType]) -> None:
        """A topic feeding aggregation views carries raw events: no transform, declared fields that
        hold every key and input column, and no plain views on the same push source."""
        topic = self.spec.topic
        if not all(specs):
            raise ConfigError(
                f"topic {topic!r}: push source {self.spec.push_source!r} feeds aggregation views and "
                "plain views; give each kind its own push source"
            )
        if self.transform is not None:
            raise ConfigError(
                f"topic {topic!r} feeds aggregation views, which aggregate the raw events themselves",
                hint="remove `transform` from ingest.yaml",
            )
        if not self.spec.fields:
            raise ConfigError(
                f"topic {topic!r} feeds aggregation views: declare its message fields in ingest.yaml"
            )
        if self.spec.quality_gate:
            raise ConfigError(
                f"topic {topic!r} feeds aggregation views: quality gates judge feature rows, and this "
                "topic carries raw events",
                hint="set quality_gate: false (bad numbers and late events are dead-lettered anyway)",
            )
        needed = set().union(*(set(s.join_keys) | s.columns for s in specs))
        missing = sorted(needed - set(fields))
        if missing:
            raise ConfigError(
                f"topic {topic!r}: the aggregation views read field(s) {', '.join(missing)}, "
                "which are not among its declared fields"
            )

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
            if any(row.get(k) is None for k in self.join_keys) or not isinstance(
                row.get(self.event_col), datetime
            ):
                raise BadRecord(
                    "transform_error", f"transform output lacks a join key or a datetime {self.event_col!r}"
                )
        return rows

    def process(
        self, tp, records: list, now: datetime, hook: Hook | None, gate: bool = True
    ) -> tuple[Chunk, list]:
        """Rows of a poll batch (one partition, offset order) and ``(record, BadRecord)`` for the rest.

        With ``gate`` (off only for the warm-up replay, whose rows are dropped anyway) the batch goes
        through the views' quality gates: a strict failure dead-letters every record of the batch."""
        recs, event_us, pos, failed = self.decoder.decode_batch([r.value for r in records], now)
        bad = [(records[i], e) for i, e in failed]
        if self.lateness_us is not None:
            recs, event_us, pos = batch_rows.drop_late(self.lateness_us, records, recs, event_us, pos, bad)
        recs, event_us, pos = batch_rows.check_keys(self.key_field, records, recs, event_us, pos, bad)
        batch = getattr(hook, "batch", None)
        if batch is not None:
            if recs:
                cols = {name: [r[name] for r in recs] for name in self._inputs}
                cols[self.spec.event_time_field] = np.array(event_us, dtype=np.int64)
                try:
                    out, rejected = batch(cols)
                except Exception as e:  # user code; its state may be half-updated, so no per-record retry
                    raise IngestError(
                        f"transform {self.spec.transform!r} failed on a batch of topic "
                        f"{self.spec.topic!r}: {type(e).__name__} (FS_DEBUG=1 -v shows the traceback)",
                        hint="fix the transform's batch method; uncommitted records are replayed",
                    ) from e
                if rejected:
                    for j in rejected:
                        bad.append(
                            (records[pos[j]], BadRecord("transform_error", "transform rejected the record"))
                        )
                    dropped = set(rejected)
                    pos = [p for j, p in enumerate(pos) if j not in dropped]
                    bad.sort(key=lambda b: b[0].offset)
                table = batch_rows.batch_table(
                    self.schema, self.spec.transform, self.join_keys, self.event_col, out, len(pos)
                )
            else:
                table = self.schema.empty_table()
            row_pos = pos
        else:
            rows, row_pos = [], []
            for j, record in enumerate(recs):
                try:
                    produced = self.rows(record, hook)
                except BadRecord as e:
                    bad.append((records[pos[j]], e))
                    continue
                rows.extend(produced)
                row_pos.extend([pos[j]] * len(produced))
            try:
                table = pa.Table.from_pylist(rows, schema=self.schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                rows, row_pos = batch_rows.fitting(self.schema, rows, row_pos, records, bad)
                table = pa.Table.from_pylist(rows, schema=self.schema)
            if len(bad) > len(failed):
                bad.sort(key=lambda b: b[0].offset)
        if gate and self.gates and table.num_rows:
            keys = {self.event_col, *self.join_keys}
            rejection = gate_rejection(self._store, self.gates, self.views, keys, table)
            if rejection is not None:
                bad.extend((records[p], rejection) for p in sorted(set(row_pos)))
                bad.sort(key=lambda b: b[0].offset)
                table, row_pos = self.schema.empty_table(), []
        offsets = np.fromiter((records[p].offset for p in row_pos), dtype=np.int64, count=len(row_pos))
        return Chunk(tp, batch_rows.stamp_created(self.created_col, table, records, row_pos), offsets), bad

    def buffer(self, chunk: Chunk, last_offset: int) -> None:
        """Buffer a processed poll batch whose records go up to ``last_offset``."""
        now = time.monotonic()
        for buf, on in ((self.online_buffer, self.online), (self.offline_buffer, self.offline)):
            if on is None:
                continue
            if buf.since is None:
                buf.since = now
            if chunk.table.num_rows:
                buf.chunks.append(chunk)
                buf.n += chunk.table.num_rows
            buf.through[chunk.tp] = last_offset

    def pending(self, in_flight: int = 0, online_in_flight: int = 0) -> int:
        """Rows held for the slower target (``in_flight``: rows of an append being written;
        ``online_in_flight``: of an online write)."""
        return max(self.online_buffer.n + online_in_flight, self.offline_buffer.n + in_flight)

    def clear(self) -> None:
        self.online_buffer = Buffer()
        self.offline_buffer = Buffer()
