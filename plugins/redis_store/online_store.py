"""Feast online store on Redis: fast reads, per-view TTL, event-time-ordered writes, tenant
prefixes, Redis Cluster. Layout in keys.py, encoding in codec.py, docs in docs/online_store.md.

    online_store:
      type: fs_platform.plugins.redis_store.online_store.RedisOnlineStore
      url: rediss://redis.internal:6380/0     # omit in dev: embedded Valkey under data/valkey
      password_env: FS_REDIS_PASSWORD
      key_prefix: acme                          # tenant prefix (ACL: ~acme:*)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from feast import Entity, FeatureService, FeatureView, RepoConfig
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from fs_platform.plugins.redis_store.codec import created_us
from fs_platform.plugins.redis_store.config import RedisStoreSettings
from fs_platform.plugins.redis_store.connection import Endpoint
from fs_platform.plugins.redis_store.generic_read import (
    append_results,
    generic_reads,
    online_read_rows,
    rows_out,
)
from fs_platform.plugins.redis_store.read_plan import plan_for, requested_order
from fs_platform.plugins.redis_store.reader import ViewRead, ViewResult, build_keys, decode
from fs_platform.plugins.redis_store.state import StoreState, view_read
from fs_platform.plugins.redis_store.teardown import delete_project, delete_views
from fs_platform.plugins.redis_store.tile_events import EventWrite, prepare_events
from fs_platform.plugins.redis_store.tile_store import TileWriteResult, write_tiles
from fs_platform.plugins.redis_store.write_prep import prepare_protos, prepare_table
from fs_platform.plugins.redis_store.writer import RowWrite, WriteResult

__all__ = ["RedisOnlineStore", "RedisOnlineStoreConfig"]

logger = logging.getLogger(__name__)

_ROWS_PER_SEND = 20_000  # rows encoded and sent per pipeline: bounds client memory on big writes


class RedisOnlineStoreConfig(RedisStoreSettings):
    """The store's settings (fields: config.py). Declared in this module because Feast finds the store
    class through its config class's module (and the config class through the store's ``type``)."""


class RedisOnlineStore(OnlineStore):
    """Redis online store; see module docstring and docs/online_store.md."""

    def __init__(self):
        self._state: StoreState | None = None
        self._state_key: tuple | None = None

    @property
    def async_supported(self) -> SupportedAsyncMethods:
        return SupportedAsyncMethods(read=True, write=True)

    def state(self, config: RepoConfig) -> StoreState:
        key = (config.project, id(config.online_store))
        if self._state is None or self._state_key != key:
            self._state = StoreState(config)
            self._state_key = key
        return self._state

    # --- the public port: what backfill, parity, the ingestor and fs.store use ----------------
    def read_view(
        self,
        config: RepoConfig,
        view: FeatureView,
        features: Sequence[str],
        columns: Mapping[str, list],
        n: int,
        now_us: int,
    ) -> ViewResult:
        """``features`` of ``view`` for ``n`` entity rows given column-wise by join key, as of ``now_us``
        (plain rows: values, statuses, event times; aggregation views: tiles merged at ``now_us``)."""
        state = self.state(config)
        read = view_read(
            state.layout, view, state.codec(view), list(features), ttl=state.cfg.enforce_view_ttl
        )
        return state.read([read], columns, n, now_us)[0]

    def read_rows_with_created(
        self,
        config: RepoConfig,
        view: FeatureView,
        features: Sequence[str],
        columns: Mapping[str, list],
        n: int,
        now_us: int,
    ) -> tuple[ViewResult, list[int]]:
        """``read_view`` of a plain view, always applying its ttl at ``now_us`` (the offline rule), plus
        each row's stored created time in microseconds (0 where nothing is stored): for parity."""
        state = self.state(config)
        read = ViewRead(state.layout, view, state.codec(view), list(features))
        replies = state.mget(build_keys(state.layout, [read], columns))
        result = decode([read], replies, n, state.old_schema, now_us=now_us)[0]
        return result, [0 if r is None else created_us(r) for r in replies]

    def lease_client(self, config: RepoConfig) -> tuple[Any, str, Endpoint]:
        """``(client, key namespace, endpoint)``: where the backfill keeps its leases (same pool)."""
        state = self.state(config)
        return state.client, state.layout.namespace, state.endpoint

    def close(self) -> None:
        """Disconnect this store's clients; the next call reconnects."""
        state, self._state, self._state_key = self._state, None, None
        if state is not None:
            state.close()

    # --- writes: one API for materialize, push and the ingestor ----------------------------
    def write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: Sequence[tuple[EntityKeyProto, Mapping[str, ValueProto], datetime, datetime | None]],
    ) -> WriteResult:
        """Write Feast-shaped rows; older events than stored ones are skipped (see WriteResult)."""
        state = self.state(config)
        result = WriteResult()
        for start in range(0, len(data), _ROWS_PER_SEND):
            result += state.writer.write(prepare_protos(state, table, data[start : start + _ROWS_PER_SEND]))
        return result

    async def write_batch_async(self, config: RepoConfig, table: FeatureView, data) -> WriteResult:
        state = self.state(config)
        _, writer = state.async_client()
        result = WriteResult()
        for start in range(0, len(data), _ROWS_PER_SEND):
            result += await writer.write_async(
                prepare_protos(state, table, data[start : start + _ROWS_PER_SEND])
            )
        return result

    def write_arrow(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: pa.Table | pa.RecordBatch,
        event_column: str | None = None,
        created_column: str | None = None,
        progress: Callable | None = None,
    ) -> WriteResult:
        """Write an Arrow table/batch with join-key, feature and timestamp columns (feature names
        already mapped). Timestamp columns default to the view's batch source's. ``progress()`` after
        each round trip. Encoded and sent ``_ROWS_PER_SEND`` rows at a time (bounded client memory)."""
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        result = WriteResult()
        for start in range(0, data.num_rows, _ROWS_PER_SEND):
            chunk = data.slice(start, _ROWS_PER_SEND)
            result += self.prepare_arrow(config, table, chunk, event_column, created_column).send(progress)
        return result

    def prepare_arrow(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: pa.Table,
        event_column: str | None = None,
        created_column: str | None = None,
    ) -> RowWrite:
        """``write_arrow`` in two steps, all of ``data`` at once: this encodes the rows (CPU only),
        ``.send(progress)`` writes them (the ingestor encodes on its loop thread, see RowWrite)."""
        state = self.state(config)
        batches = [
            prepare_table(state, table, data.slice(start, _ROWS_PER_SEND), event_column, created_column)
            for start in range(0, data.num_rows, _ROWS_PER_SEND)
        ]
        return RowWrite(state, table.name, data.num_rows, batches)

    def write_events(
        self,
        config: RepoConfig,
        table: FeatureView | Sequence[FeatureView],
        events: pa.Table,
        partitions: Sequence[str],
        offsets,
        time_column: str,
        expire: bool = True,
        progress: Callable | None = None,
    ) -> TileWriteResult:
        """Apply raw events to the tiles of one or several aggregation views (one round trip per
        ~2000 keys), each (partition, offset) at most once per view; ``progress()`` after each round trip."""
        prepared = self.prepare_events(config, table, events, partitions, offsets, time_column, expire)
        return prepared.send(progress)

    def prepare_events(
        self,
        config: RepoConfig,
        table: FeatureView | Sequence[FeatureView],
        events: pa.Table,
        partitions: Sequence[str],
        offsets,
        time_column: str,
        expire: bool = True,
    ) -> EventWrite:
        """``write_events`` in two steps: this packs the events (CPU only), ``.send(progress)`` writes
        them (see tile_events.EventWrite)."""
        views = [table] if isinstance(table, FeatureView) else list(table)
        return prepare_events(self.state(config), views, events, partitions, offsets, time_column, expire)

    def write_tiles(self, config: RepoConfig, table: FeatureView, tiles: pa.Table) -> TileWriteResult:
        """Write tiles rebuilt from the raw events (see tile_store.write_tiles)."""
        return write_tiles(self.state(config), table, tiles)

    def online_write_batch(
        self, config: RepoConfig, table: FeatureView, data, progress: Callable | None
    ) -> None:
        result = self.write_batch(config, table, data)
        logger.debug("online write %s: %s", table.name, result)
        if progress:
            progress(len(data))

    async def online_write_batch_async(
        self, config: RepoConfig, table: FeatureView, data, progress: Callable | None
    ) -> None:
        result = await self.write_batch_async(config, table, data)
        logger.debug("online write %s: %s", table.name, result)
        if progress:
            progress(len(data))

    # --- reads ----------------------------------------------------------------------------
    def _fast_path(self, config, features, entity_rows, registry, project, full_feature_names, versioned):
        """(state, plan, (entity columns, n)) for the direct read; entity is None when the request needs
        Feast's generic path (versioned reads, on-demand or entityless views, unusual entity rows)."""
        state = self.state(config)
        plan = None if versioned else plan_for(state, registry, project, features, full_feature_names)
        return state, plan, (plan.entity_columns(entity_rows) if plan else None)

    def get_online_features(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows,
        registry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        args = (config, features, entity_rows, registry, project, full_feature_names)
        state, plan, entity = self._fast_path(*args, include_feature_view_version_metadata)
        if entity is None:
            response = super().get_online_features(*args, include_feature_view_version_metadata)
            return requested_order(registry, project, features, full_feature_names, response)
        columns, n = entity
        return plan.response(columns, n, state.read(plan.reads, columns, n))

    async def get_online_features_async(
        self,
        config: RepoConfig,
        features,
        entity_rows,
        registry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        args = (config, features, entity_rows, registry, project, full_feature_names)
        state, plan, entity = self._fast_path(*args, include_feature_view_version_metadata)
        if entity is None:
            response = await super().get_online_features_async(*args, include_feature_view_version_metadata)
            return requested_order(registry, project, features, full_feature_names, response)
        columns, n = entity
        return plan.response(columns, n, await state.read_async(plan.reads, columns, n))

    def _read_features_per_fv(
        self,
        config,
        grouped_refs,
        join_key_values,
        entity_name_to_join_key_map,
        online_features_response,
        full_feature_names,
        include_feature_view_version_metadata,
    ):
        """Feast's generic path (ODFVs, proto entity values): still one round trip for all views."""
        state = self.state(config)
        reads, columns, n = generic_reads(state, grouped_refs, join_key_values)
        append_results(
            online_features_response,
            grouped_refs,
            reads,
            state.read(reads, columns, n),
            full_feature_names,
            include_feature_view_version_metadata,
        )

    async def _read_features_per_fv_async(
        self,
        config,
        grouped_refs,
        join_key_values,
        entity_name_to_join_key_map,
        online_features_response,
        full_feature_names,
        include_feature_view_version_metadata,
    ):
        state = self.state(config)
        reads, columns, n = generic_reads(state, grouped_refs, join_key_values)
        results = await state.read_async(reads, columns, n)
        append_results(
            online_features_response,
            grouped_refs,
            reads,
            results,
            full_feature_names,
            include_feature_view_version_metadata,
        )

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ):
        state = self.state(config)
        read, columns, n = online_read_rows(state, table, entity_keys, requested_features)
        return rows_out(read, state.read([read], columns, n)[0])

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ):
        state = self.state(config)
        read, columns, n = online_read_rows(state, table, entity_keys, requested_features)
        return rows_out(read, (await state.read_async([read], columns, n))[0])

    # --- lifecycle ------------------------------------------------------------------------
    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ):
        delete_views(self.state(config), tables_to_delete)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]):
        delete_project(self.state(config), config.project)
