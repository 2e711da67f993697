"""The two write targets of a push source: the online store and its Delta batch source.

Online: the fs Redis store's ``write_arrow`` (event-time ordered, atomic per key), so a
redelivered or older row is a counted no-op. Offline: Delta appends made exactly-once by Delta
application-transaction identifiers: each append records, per Kafka partition, the last offset it
contains (``app_id = fs-ingest:<group>:<topic>:<partition>``, ``version = offset``) in the same
commit as the rows; rows at or below the recorded offset are dropped before appending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from feast import FeatureView
from feast.type_map import feast_value_type_to_pa

from fs.errors import (
    ConfigError,
    IngestError,
    OnlineAccessDenied,
    OnlineStoreError,
    OnlineWriteError,
    SinkUnavailable,
    TransientError,
)
from plugins.delta.tables import resolve_location, storage_options

log = logging.getLogger(__name__)
_TS = pa.timestamp("us", tz="UTC")


def _view_fields(view: FeatureView) -> list[pa.Field]:
    cols = [*view.entity_columns, *view.features]
    return [pa.field(f.name, feast_value_type_to_pa(f.dtype.to_value_type())) for f in cols]


@dataclass(frozen=True)
class OnlineResult:
    written: int
    skipped_stale: int


class OnlineSink:
    """Writes rows to every online feature view fed by the push source."""

    def __init__(self, store, views: list[FeatureView]):
        from plugins.redis_store.online_store import RedisOnlineStore, RedisOnlineStoreConfig

        if not isinstance(store.config.online_store, RedisOnlineStoreConfig):
            raise ConfigError("the Kafka ingestor writes online through the fs Redis store",
                              hint="set online_store.type: plugins.redis_store.online_store.RedisOnlineStore")
        self._config = store.config
        self._store = RedisOnlineStore()
        self._views = [v for v in views if v.online]
        batch = views[0].batch_source
        self._event_col = batch.timestamp_field
        self._created_col = batch.created_timestamp_column or "created_at"
        self._schemas = [
            pa.schema([*_view_fields(v), pa.field(self._event_col, _TS), pa.field(self._created_col, _TS)])
            for v in self._views
        ]
        self._keys = [v.join_keys for v in self._views]

    def write(self, rows: list[dict], now: datetime) -> OnlineResult:
        written = stale = 0
        for view, schema, keys in zip(self._views, self._schemas, self._keys, strict=True):
            newest = _newest_per_key(rows, keys, self._event_col)
            stale += len(rows) - len(newest)
            table = _to_arrow(newest, schema, self._created_col, now)
            try:
                result = self._store.write_arrow(self._config, view, table, self._event_col, self._created_col)
            except (TransientError, OnlineWriteError, OnlineAccessDenied):
                raise
            except OnlineStoreError as e:  # other server errors (LOADING, READONLY in a failover) pass
                raise SinkUnavailable(f"online write to {view.name!r} failed: {e}") from e
            written += result.written
            # Rows already past the view's ttl can never be served: as stale as an older event.
            stale += result.skipped_stale + result.skipped_expired
        return OnlineResult(written, stale)


def _newest_per_key(rows: list[dict], keys: list[str], event_col: str) -> list[dict]:
    """Only the newest row per entity goes to Redis; the store would skip the others anyway."""
    best: dict = {}
    if len(keys) == 1:
        k = keys[0]
        for row in rows:
            cur = best.get(row[k])
            if cur is None or row[event_col] >= cur[event_col]:
                best[row[k]] = row
    else:
        for row in rows:
            key = tuple(row[k] for k in keys)
            cur = best.get(key)
            if cur is None or row[event_col] >= cur[event_col]:
                best[key] = row
    return list(best.values())


def _to_arrow(rows: list[dict], schema: pa.Schema, created_col: str, now: datetime) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=schema.remove(schema.get_field_index(created_col)))
    return table.append_column(pa.field(created_col, _TS), pa.array([now] * len(rows), _TS))


@dataclass(frozen=True)
class OfflineResult:
    written: int
    skipped_duplicate: int


class OfflineSink:
    """Exactly-once Delta appends to the push source's batch source."""

    def __init__(self, repo_config, push_source, views: list[FeatureView], group: str):
        batch = push_source.batch_source
        if not hasattr(batch, "path") or not batch.path:
            raise ConfigError(f"push source {push_source.name!r}: offline target needs a path DeltaSource batch source")
        self.location = resolve_location(batch, repo_config)
        self._options = storage_options(batch) or None
        self._group = group
        self._event_col = batch.timestamp_field
        self._created_col = batch.created_timestamp_column or "created_at"
        fields: dict[str, pa.Field] = {}
        for v in views:
            for f in _view_fields(v):
                fields.setdefault(f.name, f)
        self._default_schema = pa.schema([*fields.values(), pa.field(self._event_col, _TS),
                                          pa.field(self._created_col, _TS)])

    def app_id(self, topic: str, partition: int) -> str:
        return f"fs-ingest:{self._group}:{topic}:{partition}"

    def _table(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.location, storage_options=self._options)
        except TableNotFoundError:
            return None

    def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Last offset per partition already in the table (-1: none)."""
        try:
            table = self._table()
        except (OSError, DeltaError) as e:
            raise SinkUnavailable(f"cannot read the Delta log at {self.location}: {e}") from e
        return {tp: _txn(table, self.app_id(*tp)) for tp in partitions}

    def append(self, rows: list[dict], origins: list[tuple[tuple[str, int], int]],
               through: dict[tuple[str, int], int], now: datetime) -> OfflineResult:
        """Append ``rows`` (``origins[i]`` = (partition, offset) of row i) not yet in the table and
        record ``through`` (last offset consumed per partition) in the same commit."""
        try:
            table = self._table()
            done = {tp: _txn(table, self.app_id(*tp)) for tp in through}
            keep = [row for row, (tp, offset) in zip(rows, origins, strict=True) if offset > done[tp]]
            txns = [Transaction(self.app_id(*tp), last) for tp, last in through.items() if last > done[tp]]
            if not keep:
                return OfflineResult(0, len(rows))
            schema = pa.schema(table.schema().to_arrow()) if table is not None else self._default_schema
            data = _to_arrow(keep, schema, self._created_col, now)
            write_deltalake(table if table is not None else self.location, data, mode="append",
                            storage_options=None if table is not None else self._options,
                            commit_properties=CommitProperties(app_transactions=txns))
        except (OSError, CommitFailedError) as e:
            raise SinkUnavailable(f"Delta append to {self.location} failed: {e}") from e
        except (DeltaError, pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
            raise IngestError(f"rows do not fit the Delta table at {self.location}: {type(e).__name__}: {e}",
                              hint="check the transform's output against the feature view schema") from e
        return OfflineResult(len(keep), len(rows) - len(keep))


def _txn(table: DeltaTable | None, app_id: str) -> int:
    if table is None:
        return -1
    version = table.transaction_version(app_id)
    return -1 if version is None else version

