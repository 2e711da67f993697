"""One topic's path from Kafka records to buffered rows, and its two write buffers.

Per poll batch: decode and validate (``decode.RecordDecoder.decode_batch``), transform (the repo's
hook: its ``batch`` method when it has one, else per record), and append the rows as one Arrow
table to the online and offline buffers with the Kafka offset each row came from. Bad records
become ``BadRecord``s for the dead-letter topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.value_type import ValueType

from fs_platform.aggregation.spec import spec_of
from fs_platform.errors import ConfigError, IngestError
from fs_platform.plugins.kafka_ingest.config import FieldType, TopicSpec
from fs_platform.plugins.kafka_ingest.decode import BadRecord, RecordDecoder
from fs_platform.plugins.kafka_ingest.sinks import (
    EventSink,
    OfflineSink,
    OnlineSink,
    created_column,
    row_schema,
)
from fs_platform.plugins.kafka_ingest.transform import Hook, TransformFactory, load_transform

_ARROW_TYPES: dict[FieldType, pa.DataType] = {
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


@dataclass
class Chunk:
    """Rows of one poll batch of one partition: ``offsets[i]`` is the Kafka offset of row i."""

    tp: object  # TopicPartition
    table: pa.Table
    offsets: np.ndarray


@dataclass
class Buffer:
    """Rows waiting for one target, and the last offset consumed per partition they cover."""

    chunks: list[Chunk] = field(default_factory=list)
    n: int = 0  # rows in chunks
    through: dict = field(default_factory=dict)  # TopicPartition -> last offset consumed
    since: float | None = None  # monotonic time of the oldest pending record

    def due(self, max_rows: int, interval_s: float, now: float) -> bool:
        return bool(self.through) and (self.n >= max_rows or now - self.since >= interval_s)

    def table(self) -> pa.Table | None:
        tables = [c.table for c in self.chunks if c.table.num_rows]
        return None if not tables else tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def origins(self) -> tuple[list[str], np.ndarray]:
        """``topic/partition`` and Kafka offset of each row of ``table()``, in its order."""
        chunks = [c for c in self.chunks if c.table.num_rows]
        partitions: list[str] = []
        for c in chunks:
            partitions += [f"{c.tp.topic}/{c.tp.partition}"] * c.table.num_rows
        offsets = np.concatenate([c.offsets for c in chunks]) if chunks else np.empty(0, np.int64)
        return partitions, offsets

    def take(self) -> Buffer:
        taken = Buffer(self.chunks, self.n, self.through, self.since)
        self.chunks, self.n, self.through, self.since = [], 0, {}, None
        return taken

    def restore(self, taken: Buffer) -> None:
        """Put back a taken buffer whose write failed, in front of what was buffered since."""
        self.chunks = taken.chunks + self.chunks
        self.n += taken.n
        self.through = {**taken.through, **self.through}  # later offsets win
        self.since = taken.since if self.since is None else min(taken.since, self.since)


def _quality_gates(repo: Path, views: list[FeatureView]) -> list[tuple[str, str]]:
    """(view, strict|warn) for each view whose expectation suite sets ``meta.gate``."""
    from fs_platform.governance.expectations import load_suite

    gates = []
    for view in views:
        suite = load_suite(repo, view.name)
        if suite is not None and suite.gate:
            gates.append((view.name, suite.gate))
    return gates


def _keep(keep: list[int], records, recs, event_us, pos, bad: list, rejected: BadRecord):
    """The decoded records at indices ``keep``; the others go to ``bad`` (kept in offset order)."""
    if len(keep) == len(pos):
        return recs, event_us, pos
    kept = set(keep)
    bad.extend((records[p], rejected) for j, p in enumerate(pos) if j not in kept)
    bad.sort(key=lambda b: b[0].offset)
    return [recs[j] for j in keep], [event_us[j] for j in keep], [pos[j] for j in keep]


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
                [pa.field(n, _ARROW_TYPES[t]) for n, t in fields.items() if n != spec.event_time_field]
                + [pa.field(self.event_col, _ARROW_TYPES["timestamp"])]
                + ([pa.field(self.created_col, _ARROW_TYPES["timestamp"])] if self.created_col else [])
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
        self.gates = _quality_gates(repo, views) if spec.quality_gate else []
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
            recs, event_us, pos = self._drop_late(records, recs, event_us, pos, bad)
        recs, event_us, pos = self._check_keys(records, recs, event_us, pos, bad)
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
                table = self._table(out, len(pos))
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
                rows, row_pos = self._fitting(rows, row_pos, records, bad)
                table = pa.Table.from_pylist(rows, schema=self.schema)
            if len(bad) > len(failed):
                bad.sort(key=lambda b: b[0].offset)
        if gate and self.gates and table.num_rows:
            rejection = self._check(table)
            if rejection is not None:
                bad.extend((records[p], rejection) for p in sorted(set(row_pos)))
                bad.sort(key=lambda b: b[0].offset)
                table, row_pos = self.schema.empty_table(), []
        offsets = np.fromiter((records[p].offset for p in row_pos), dtype=np.int64, count=len(row_pos))
        return Chunk(tp, self._stamp_created(table, records, row_pos), offsets), bad

    def _check_keys(self, records, recs, event_us, pos, bad):
        """A record whose Kafka key is not its entity's (null, or another value than ``key_field``'s) was
        partitioned apart from that entity's other events: dead-lettered (``bad_key``), never aggregated
        or written apart from them."""
        name = self.key_field
        rejected = BadRecord("bad_key", f"the Kafka key is null or is not the value of field {name!r}")
        keep = [j for j, p in enumerate(pos) if records[p].key == str(recs[j][name]).encode()]
        return _keep(keep, records, recs, event_us, pos, bad, rejected)

    def _fitting(
        self, rows: list[dict], row_pos: list[int], records, bad: list
    ) -> tuple[list[dict], list[int]]:
        """The rows whose record's rows all fit the schema; the other records are dead-lettered (a
        transform returned a value its column cannot hold, e.g. an int beyond Int32)."""
        by_record: dict[int, list[dict]] = {}
        for row, p in zip(rows, row_pos, strict=True):
            by_record.setdefault(p, []).append(row)
        kept_rows, kept_pos = [], []
        for p, its_rows in by_record.items():
            try:
                pa.Table.from_pylist(its_rows, schema=self.schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                bad.append(
                    (
                        records[p],
                        BadRecord("transform_error", "transform output does not fit the view's columns"),
                    )
                )
                continue
            kept_rows += its_rows
            kept_pos += [p] * len(its_rows)
        return kept_rows, kept_pos

    def _drop_late(self, records, recs, event_us, pos, bad):
        """Aggregation topics: an event older than its Kafka record's timestamp minus the allowed
        lateness is dead-lettered (``too_late``), so neither tiles nor the raw Delta table count it.
        The record timestamp, not the clock, decides: a replay decides the same way."""
        keep = []
        for j, p in enumerate(pos):
            stamp = records[p].timestamp
            if stamp is None or stamp < 0 or event_us[j] >= stamp * 1000 - self.lateness_us:
                keep.append(j)
        too_late = BadRecord("too_late", "event time is older than the allowed lateness")
        return _keep(keep, records, recs, event_us, pos, bad, too_late)

    def _stamp_created(self, table: pa.Table, records: list, row_pos: list[int]) -> pa.Table:
        """Rows' created time (unless the transform set it): their record's Kafka timestamp, the
        same on every delivery, so online and offline hold the same ``(event, created)`` and a
        redelivery is the same row. A record without a timestamp (-1) leaves it null (write time)."""
        if not table.num_rows or self.created_col is None:
            return table
        ms = np.fromiter(
            (-1 if records[p].timestamp is None else records[p].timestamp for p in row_pos),
            dtype=np.int64,
            count=len(row_pos),
        )
        stamps = pa.array(ms * 1000, pa.int64(), mask=ms < 0).cast(pa.timestamp("us", tz="UTC"))
        i = table.schema.get_field_index(self.created_col)
        return table.set_column(i, self.created_col, pc.coalesce(table[self.created_col], stamps))

    def _check(self, table: pa.Table) -> BadRecord | None:
        """Run the gated views' suites on a batch; the reason to dead-letter it, if a strict one fails."""
        from fs_platform.governance.validate import gate

        for view, mode in self.gates:
            columns = [
                c
                for c in table.column_names
                if c == self.event_col
                or c in self.join_keys
                or c in {f.name for v in self.views if v.name == view for f in v.features}
            ]
            result = gate(self._store, view, table.select(columns), mode=mode, origin="ingest")
            if not result.accepted:
                return BadRecord("validation_failed", result.summary())
        return None

    def _table(self, out: dict, n: int) -> pa.Table:
        """A batch transform's output columns as a ``row_schema`` table (checked like hook rows)."""
        arrays = []
        for f in self.schema:
            v = out.get(f.name)
            if v is None:
                if f.name in self.join_keys or f.name == self.event_col:
                    raise IngestError(f"transform {self.spec.transform!r} returned no {f.name!r} column")
                arrays.append(pa.nulls(n, f.type))
                continue
            if f.name == self.event_col:
                a = pa.array(np.asarray(v, dtype=np.int64)).cast(f.type)
            else:
                a = pa.array(v, type=f.type)
            if len(a) != n or (f.name in self.join_keys and a.null_count):
                raise IngestError(
                    f"transform {self.spec.transform!r}: column {f.name!r} has nulls or a wrong length"
                )
            arrays.append(a)
        return pa.Table.from_arrays(arrays, schema=self.schema)

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
