"""The two write targets of a push source: the online store and its Delta batch source.

Both write each row's created timestamp as the pipeline set it: the Kafka record's timestamp (see
``pipeline.TopicPipeline.process``), so a row has the same ``(event, created)`` online and offline,
and a redelivered record is the same row again (a no-op online, skipped offline). Rows without one
(a record with no timestamp) get the write time.

Online: the fs Redis store's ``write_arrow`` (event-time ordered, atomic per key), so a
redelivered or older row is a counted no-op. Offline: Delta appends made exactly-once by Delta
application-transaction identifiers: each append records, per Kafka partition, the last offset it
contains (``app_id = fs-ingest:<group>:<topic>:<partition>``, ``version = offset``) in the same
commit as the rows; rows at or below the recorded offset are dropped before appending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from feast import FeatureView
from feast.type_map import feast_value_type_to_pa

from fs_platform.errors import (
    ConfigError,
    IngestError,
    OnlineAccessDenied,
    OnlineStoreError,
    OnlineWriteError,
    SinkUnavailable,
    TransientError,
)
from fs_platform.feast_compat import online_store
from fs_platform.newest import newest_per_key
from fs_platform.plugins.delta.tables import resolve_location, storage_options

log = logging.getLogger(__name__)
_TS = pa.timestamp("us", tz="UTC")


def _view_fields(view: FeatureView) -> list[pa.Field]:
    cols = [*view.entity_columns, *view.features]
    return [pa.field(f.name, feast_value_type_to_pa(f.dtype.to_value_type())) for f in cols]


def created_column(batch_source) -> str:
    """The created-timestamp column the rows carry (the batch source's, else ``created_at``)."""
    return batch_source.created_timestamp_column or "created_at"


def row_schema(views: list[FeatureView], event_col: str, created_col: str) -> pa.Schema:
    """Columns of the rows a push source carries: every view's join keys and features, event and
    created time."""
    fields: dict[str, pa.Field] = {}
    for v in views:
        for f in _view_fields(v):
            fields.setdefault(f.name, f)
    return pa.schema([*fields.values(), pa.field(event_col, _TS), pa.field(created_col, _TS)])


def _created(table: pa.Table, column: str, now: datetime) -> pa.Array:
    """``table``'s created column, the write time where it is null or missing."""
    if column not in table.column_names:
        return _repeat(now, table.num_rows)
    return pc.fill_null(table[column].cast(_TS), pa.scalar(now, _TS))


@dataclass(frozen=True)
class OnlineResult:
    written: int
    skipped_stale: int


class OnlineSink:
    """Writes rows to every online feature view fed by the push source."""

    def __init__(self, store, views: list[FeatureView]):
        from fs_platform.plugins.redis_store.online_store import RedisOnlineStoreConfig

        if not isinstance(store.config.online_store, RedisOnlineStoreConfig):
            raise ConfigError(
                "the Kafka ingestor writes online through the fs Redis store",
                hint="set online_store.type: fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
            )
        self._config = store.config
        self._store = online_store(store)  # the store's own instance and pool, not a second one
        self._views = [v for v in views if v.online]
        batch = views[0].batch_source
        self._event_col = batch.timestamp_field
        self._created_col = created_column(batch)
        self._schemas = [
            pa.schema([*_view_fields(v), pa.field(self._event_col, _TS), pa.field(self._created_col, _TS)])
            for v in self._views
        ]
        self._keys = [v.join_keys for v in self._views]

    def prepare(self, table: pa.Table, now: datetime, origins=None):
        """Encode a table of rows (``row_schema`` columns) for every online view fed by the source (CPU
        only, on the caller's thread); returns the write itself, ``send(progress=None) -> OnlineResult``,
        ``progress()`` after each round trip to Redis."""
        writes, stale = [], 0
        for view, schema, keys in zip(self._views, self._schemas, self._keys, strict=True):
            data = _conform(table, schema.remove(schema.get_field_index(self._created_col)))
            data = data.append_column(
                pa.field(self._created_col, _TS), _created(table, self._created_col, now)
            )
            # Only each entity's newest row goes to Redis (the store would skip the others anyway), picked
            # by the point-in-time join's order; exact ties: the first row, as the ordered write keeps it.
            newest, _ = newest_per_key(data, keys, self._event_col, self._created_col)
            if len(newest) < data.num_rows:
                stale += data.num_rows - len(newest)
                data = data.take(newest)
            with _sink_errors(f"online write to {view.name!r}"):
                writes.append(
                    self._store.prepare_arrow(self._config, view, data, self._event_col, self._created_col)
                )

        def send(progress=None) -> OnlineResult:
            written, skipped = 0, stale
            for write in writes:
                with _sink_errors(f"online write to {write.view!r}"):
                    result = write.send(progress)
                written += result.written
                # Rows already past the view's ttl can never be served: as stale as an older event.
                skipped += result.skipped_stale + result.skipped_expired
            return OnlineResult(written, skipped)

        return send

    def write(self, table: pa.Table, now: datetime, origins=None, progress=None) -> OnlineResult:
        return self.prepare(table, now, origins)(progress)


@contextmanager
def _sink_errors(what: str):
    """Store errors as the ingestor's guard classifies them: transient ones and terminal write errors
    as they are, other server errors (LOADING, READONLY in a failover) as ``SinkUnavailable``."""
    try:
        yield
    except (TransientError, OnlineWriteError, OnlineAccessDenied):
        raise
    except OnlineStoreError as e:
        raise SinkUnavailable(f"{what} failed: {e}") from e


class EventSink:
    """Applies raw events to the tiles of every online aggregation view fed by the push source.

    Each event carries its ``topic/partition`` and offset: the store applies it at most once, so a
    replay after a crash or a rebalance adds nothing (``skipped_stale`` counts such redeliveries)."""

    def __init__(self, store, views: list[FeatureView], event_col: str):
        from fs_platform.plugins.redis_store.online_store import RedisOnlineStoreConfig

        if not isinstance(store.config.online_store, RedisOnlineStoreConfig):
            raise ConfigError(
                "aggregation views are served by the fs Redis store",
                hint="set online_store.type: fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
            )
        self._config = store.config
        self._store = online_store(store)  # the store's own instance and pool, not a second one
        self._views = [v for v in views if v.online]
        self._event_col = event_col

    def prepare(self, table: pa.Table, now: datetime, origins):
        """Pack the events for every view's tiles (CPU only, on the caller's thread); returns the write
        itself, ``send(progress=None) -> OnlineResult``: all views' tiles in one pipeline (counts are per
        view: an event feeding three views is three), ``progress()`` after each round trip to Redis."""
        partitions, offsets = origins
        with _sink_errors("online tile write"):
            prepared = self._store.prepare_events(
                self._config, self._views, table, partitions, offsets, self._event_col
            )

        def send(progress=None) -> OnlineResult:
            with _sink_errors("online tile write"):
                result = prepared.send(progress)
            return OnlineResult(result.applied, result.duplicate)

        return send

    def write(self, table: pa.Table, now: datetime, origins, progress=None) -> OnlineResult:
        return self.prepare(table, now, origins)(progress)


def _repeat(now: datetime, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(now, type=_TS), n)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (absent columns are null)."""
    cols = [
        table[f.name] if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in schema
    ]
    return pa.Table.from_arrays(cols, names=schema.names).cast(schema)


@dataclass(frozen=True)
class OfflineResult:
    written: int
    skipped_duplicate: int


class OfflineSink:
    """Exactly-once Delta appends to the push source's batch source.

    ``append`` keeps its ``DeltaTable`` open between calls and brings it up to date incrementally
    (other group members append to the same table), instead of replaying the log on every append.
    One thread at a time (the ingestor's Delta writer)."""

    def __init__(
        self, repo_config, push_source, views: list[FeatureView], group: str, schema: pa.Schema | None = None
    ):
        """``schema``: the rows' columns when they are not the views' (raw events of aggregation views,
        which carry a created column only if the batch source declares one)."""
        batch = push_source.batch_source
        if not hasattr(batch, "path") or not batch.path:
            raise ConfigError(
                f"push source {push_source.name!r}: offline target needs a path DeltaSource batch source"
            )
        self.location = resolve_location(batch, repo_config)
        self._options = storage_options(batch) or None
        self._group = group
        self._event_col = batch.timestamp_field
        if schema is None:
            self._created_col = created_column(batch)
            self._default_schema = row_schema(views, self._event_col, self._created_col)
        else:
            self._created_col = batch.created_timestamp_column or None
            self._default_schema = schema
        self._dt: DeltaTable | None = None  # append's handle, at the latest version it has seen

    def app_id(self, topic: str, partition: int) -> str:
        return f"fs-ingest:{self._group}:{topic}:{partition}"

    def _table(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.location, storage_options=self._options)
        except TableNotFoundError:
            return None

    def _latest(self) -> DeltaTable | None:
        """The append handle brought up to the table's latest version (None: no table yet). The
        transaction versions read from it may be stale by the time of the commit; Delta's conflict
        check then rejects the commit (another writer recorded the same app id), and the retry
        re-reads them."""
        if self._dt is None:
            self._dt = self._table()
        else:
            self._dt.update_incremental()
        return self._dt

    def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Last offset per partition already in the table (-1: none)."""
        try:
            table = self._table()
        except (OSError, DeltaError) as e:
            raise SinkUnavailable(f"cannot read the Delta log at {self.location}: {e}") from e
        return {tp: _txn(table, self.app_id(*tp)) for tp in partitions}

    def append(self, chunks: list, through: dict[tuple[str, int], int], now: datetime) -> OfflineResult:
        """Append the rows of ``chunks`` (each: ``table``, its partition ``tp`` and ``offsets``, the
        Kafka offset of each row) not yet in the table, and record ``through`` (last offset consumed
        per partition) in the same commit."""
        total = sum(c.table.num_rows for c in chunks)
        try:
            table = self._latest()
            done = {tp: _txn(table, self.app_id(*tp)) for tp in through}
            parts = []
            for c in chunks:
                if c.table.num_rows == 0:
                    continue
                floor = done.get(c.tp, -1)
                if c.offsets[0] > floor:  # offsets increase within a chunk
                    parts.append(c.table)
                elif c.offsets[-1] > floor:
                    parts.append(c.table.filter(pa.array(c.offsets > floor)))
            txns = [Transaction(self.app_id(*tp), last) for tp, last in through.items() if last > done[tp]]
            kept = sum(p.num_rows for p in parts)
            if not kept:
                return OfflineResult(0, total)
            schema = pa.schema(table.schema().to_arrow()) if table is not None else self._default_schema
            data = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            if self._created_col is None:
                data = _conform(data, schema)
            else:
                if self._created_col in schema.names:
                    schema = schema.remove(schema.get_field_index(self._created_col))
                data = _conform(data, schema).append_column(
                    pa.field(self._created_col, _TS), _created(data, self._created_col, now)
                )
            # Through the open handle, which then stands at the version it committed.
            write_deltalake(
                table if table is not None else self.location,
                data,
                mode="append",
                storage_options=None if table is not None else self._options,
                commit_properties=CommitProperties(app_transactions=txns),
            )
        except (OSError, CommitFailedError) as e:
            self._dt = None  # reopen on the retry
            raise SinkUnavailable(f"Delta append to {self.location} failed: {e}") from e
        except (DeltaError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError) as e:
            self._dt = None
            # Not the exception text: Arrow and delta-rs quote offending values (they may be PII).
            raise IngestError(
                f"rows do not fit the Delta table at {self.location}: {type(e).__name__}",
                hint="check the transform's output against the feature view schema",
            ) from e
        return OfflineResult(kept, total - kept)


def _txn(table: DeltaTable | None, app_id: str) -> int:
    if table is None:
        return -1
    version = table.transaction_version(app_id)
    return -1 if version is None else version
