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
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from feast import Entity, FeatureService, FeatureView, RepoConfig
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.type_map import feast_value_type_to_python_type
from pydantic import Field, StrictStr, field_validator

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import OnlineWriteError
from fs_platform.feast_compat import request_context
from fs_platform.observability import span
from fs_platform.order import requested_names
from fs_platform.plugins.redis_store.codec import created_us, to_proto
from fs_platform.plugins.redis_store.connection import Endpoint, translated
from fs_platform.plugins.redis_store.keys import check_name
from fs_platform.plugins.redis_store.read_plan import ReadPlan
from fs_platform.plugins.redis_store.reader import PRESENT, ViewRead, ViewResult, build_keys, decode
from fs_platform.plugins.redis_store.response import (
    feature_vector,
    in_requested_order,
)
from fs_platform.plugins.redis_store.state import StoreState, view_read
from fs_platform.plugins.redis_store.tile_store import (
    MARKS,
    TileWriteResult,
    write_events,
    write_tiles,
)
from fs_platform.plugins.redis_store.writer import WriteResult, prepare, prepare_arrow
from fs_platform.timeutil import arrow_epoch_micros, epoch_micros

# Feast finds the store class through its config class's module: both live here. The others are
# re-exported for callers that imported them from here.
__all__ = ["RedisOnlineStore", "RedisOnlineStoreConfig", "ReadPlan", "StoreState", "view_read"]

logger = logging.getLogger(__name__)

_ROWS_PER_SEND = 20_000  # rows encoded and sent per pipeline: bounds client memory on big writes


class RedisOnlineStoreConfig(FeastConfigBaseModel):
    """Online store config for the fs Redis store."""

    type: Literal["fs_platform.plugins.redis_store.online_store.RedisOnlineStore"] = (
        "fs_platform.plugins.redis_store.online_store.RedisOnlineStore"
    )
    """Online store type selector."""

    url: StrictStr | None = None
    """``redis://`` or ``rediss://`` (TLS) URL with db number; ``${VAR}`` is expanded by Feast.
    In cluster mode a startup node, in sentinel mode a sentinel. Unset: embedded Valkey (dev)."""

    mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    """Deployment: a single server (or a proxy), Redis Cluster, or Sentinel-managed primary."""

    extra_nodes: list[StrictStr] = Field(default_factory=list)
    """More ``host:port`` startup nodes (cluster) or sentinels (sentinel)."""

    sentinel_master: StrictStr = "mymaster"
    """Sentinel service name of the primary."""

    username_env: StrictStr | None = None
    """Name of the environment variable holding the ACL username (overrides the URL's)."""

    password_env: StrictStr | None = None
    """Name of the environment variable holding the password (overrides the URL's)."""

    key_prefix: StrictStr = "fs"
    """Tenant prefix of every key: ``<key_prefix>:<project>:...``; letters, digits, ``_``, ``-``."""

    embedded_dir: StrictStr | None = None
    """Data directory of the embedded Valkey; default ``<repo>/data/valkey``."""

    max_connections: int = 64
    """Connection pool size per client (per node in cluster mode)."""

    socket_timeout_s: float = 1.0
    """Per-command socket timeout."""

    connect_timeout_s: float = 1.0
    """TCP connect timeout."""

    health_check_interval_s: int = 30
    """PING idle connections older than this before use (0 disables)."""

    retry_attempts: int = 3
    """Retries of a command after a connection error or timeout (all commands are idempotent)."""

    retry_backoff_base_s: float = 0.01
    """First retry delay; doubles per attempt, with jitter."""

    retry_backoff_cap_s: float = 0.5
    """Maximum retry delay."""

    write_batch_size: int = 200
    """Rows per write-script call (one pipeline carries all calls of a batch). Throughput is flat
    from ~100 to ~1000 rows; smaller calls block the server for less time (~1.5 ms at 200)."""

    delete_scan_count: int = 1000
    """SCAN COUNT hint when deleting a view's or project's keys (bounds the work per server call)."""

    key_hash_secret_env: StrictStr | None = None
    """Name of the environment variable holding this tenant's key hash secret. Set: key names carry a
    keyed hash of the entity key instead of its ids (``SCAN`` then reveals no entity id). Changing
    it (or turning it on) makes existing keys unreachable: materialize again."""

    key_ttl_seconds: int | None = Field(default=None, ge=0)
    """Feast's setting, with Feast's meaning: every row key expires this many seconds after it was
    written (0/unset: never), whatever the view. With a view ttl the key expires at the earlier of
    the two. Aggregation views' tile keys keep their own expiry (their longest window)."""

    enforce_view_ttl: bool = True
    """Hide values older than their view's ``ttl`` at read time (status OUTSIDE_MAX_AGE, the offline
    meaning) and expire their keys then. ``false``: Feast's behaviour for teams migrating from it, a
    stored value is served whatever its age until it is overwritten or its key expires by
    ``key_ttl_seconds``; rows older than the ttl are written, not skipped. Parity checks keep the ttl."""

    @field_validator("key_prefix")
    @classmethod
    def _safe_prefix(cls, v: str) -> str:
        return check_name("key_prefix", v)  # refused at config load, before any key is built


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
            result += state.writer.write(
                self._prepare_protos(state, table, data[start : start + _ROWS_PER_SEND])
            )
        return result

    async def write_batch_async(self, config: RepoConfig, table: FeatureView, data) -> WriteResult:
        state = self.state(config)
        _, writer = state.async_client()
        result = WriteResult()
        for start in range(0, len(data), _ROWS_PER_SEND):
            result += await writer.write_async(
                self._prepare_protos(state, table, data[start : start + _ROWS_PER_SEND])
            )
        return result

    def write_arrow(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: pa.Table | pa.RecordBatch,
        event_column: str | None = None,
        created_column: str | None = None,
    ) -> WriteResult:
        """Write an Arrow table/batch with join-key, feature and timestamp columns (feature names
        already mapped). Timestamp columns default to the view's batch source's."""
        state = self.state(config)
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        result = WriteResult()
        with span("fs.online.write", view=table.name, rows=data.num_rows):
            for start in range(0, data.num_rows, _ROWS_PER_SEND):
                chunk = data.slice(start, _ROWS_PER_SEND)
                result += state.writer.write(
                    self._prepare_arrow(state, table, chunk, event_column, created_column)
                )
        return result

    def write_events(
        self,
        config: RepoConfig,
        table: FeatureView | Sequence[FeatureView],
        events: pa.Table,
        partitions: Sequence[str],
        offsets,
        time_column: str,
        expire: bool = True,
    ) -> TileWriteResult:
        """Apply raw events to the tiles of one or several aggregation views (one round trip per
        ~1000 keys), each (partition, offset) at most once per view."""
        views = [table] if isinstance(table, FeatureView) else list(table)
        with span("fs.online.write_events", views=",".join(v.name for v in views), events=events.num_rows):
            return write_events(self.state(config), views, events, partitions, offsets, time_column, expire)

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

    @staticmethod
    def _prepare_protos(state: StoreState, table: FeatureView, data):
        _no_rows(table)
        codec = state.codec(table)
        read = ViewRead(state.layout, table, codec, [], ttl=state.cfg.enforce_view_ttl)
        columns: dict[str, list] = {jk: [] for jk in read.join_keys}
        event_us, created_us, rows = [], [], []
        for entity_key, values, event_ts, created_ts in data:
            found = dict(zip(entity_key.join_keys, entity_key.entity_values, strict=True))
            for jk, col in columns.items():
                proto = found.get(jk)
                if proto is None:
                    raise OnlineWriteError(f"entity key for {table.name!r} lacks join key {jk!r}")
                col.append(getattr(proto, proto.WhichOneof("val")))
            event_us.append(epoch_micros(event_ts))
            created_us.append(epoch_micros(created_ts) if created_ts is not None else 0)
            rows.append(codec.values_from_protos(values))
        keys = build_keys(state.layout, [read], columns)
        return prepare(codec, read.ttl_us, keys, event_us, created_us, rows)

    @staticmethod
    def _prepare_arrow(state: StoreState, table: FeatureView, data: pa.Table, event_column, created_column):
        _no_rows(table)
        codec = state.codec(table)
        read = ViewRead(state.layout, table, codec, [], ttl=state.cfg.enforce_view_ttl)
        source = table.batch_source
        event_column = event_column or source.timestamp_field
        created_column = created_column or source.created_timestamp_column or None
        missing = [c for c in (*read.join_keys, event_column) if c not in data.column_names]
        if missing:
            raise OnlineWriteError(f"rows for {table.name!r} lack column(s) {', '.join(missing)}")
        event_us = _arrow_micros(data.column(event_column))
        if event_us.null_count:
            raise OnlineWriteError(f"rows for {table.name!r} have null {event_column}")
        if created_column and created_column in data.column_names:
            created_us = pc.fill_null(_arrow_micros(data.column(created_column)), 0)
        else:
            created_us = pa.nulls(data.num_rows, pa.int64()).fill_null(0)

        def keys_of(rows: pa.Table) -> list[str]:
            columns = [rows.column(jk) for jk in read.join_keys]
            return state.layout.arrow_keys(table.name, read.join_keys, read.key_types, read.tokens, columns)

        return prepare_arrow(codec, read.ttl_us, keys_of, data, event_us, created_us)

    # --- reads ----------------------------------------------------------------------------
    def _plan(self, state: StoreState, registry, project, features, full_feature_names) -> ReadPlan | None:
        ctx = request_context(registry, project, features, full_feature_names)
        hit = state.plans.get(id(ctx))
        if hit is not None and hit[0] is ctx:
            return hit[1]
        (refs, odfvs, name_to_jk, type_map, join_keys_set, grouped_refs, _, _, entityless) = ctx
        plan = None
        # ODFVs and versioned reads keep Feast's generic path (entity-less views: ReadPlan adds the dummy key).
        if not odfvs and all(v.projection.version_tag is None for v, _ in grouped_refs):
            plan = ReadPlan(state, grouped_refs, name_to_jk, type_map, join_keys_set, full_feature_names)
            plan.order = requested_names(refs, full_feature_names)
        if len(state.plans) > 256:
            state.plans.clear()
        state.plans[id(ctx)] = (ctx, plan)
        return plan

    def _fast_path(self, config, features, entity_rows, registry, project, full_feature_names, versioned):
        """(state, plan, (entity columns, n)) for the direct read; entity is None when the request needs
        Feast's generic path (versioned reads, on-demand or entityless views, unusual entity rows)."""
        state = self.state(config)
        plan = None if versioned else self._plan(state, registry, project, features, full_feature_names)
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
        state, plan, entity = self._fast_path(
            config,
            features,
            entity_rows,
            registry,
            project,
            full_feature_names,
            include_feature_view_version_metadata,
        )
        if entity is None:
            response = super().get_online_features(
                config,
                features,
                entity_rows,
                registry,
                project,
                full_feature_names,
                include_feature_view_version_metadata,
            )
            return self._requested_order(registry, project, features, full_feature_names, response)
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
        state, plan, entity = self._fast_path(
            config,
            features,
            entity_rows,
            registry,
            project,
            full_feature_names,
            include_feature_view_version_metadata,
        )
        if entity is None:
            response = await super().get_online_features_async(
                config,
                features,
                entity_rows,
                registry,
                project,
                full_feature_names,
                include_feature_view_version_metadata,
            )
            return self._requested_order(registry, project, features, full_feature_names, response)
        columns, n = entity
        return plan.response(columns, n, await state.read_async(plan.reads, columns, n))

    @staticmethod
    def _requested_order(registry, project, features, full_feature_names, response) -> OnlineResponse:
        """Feast's generic path answers per view, in set order: put features in requested order."""
        refs = request_context(registry, project, features, full_feature_names)[0]
        return in_requested_order(response, requested_names(refs, full_feature_names))

    def _generic_reads(self, state, grouped_refs, join_key_values):
        reads = [
            view_read(
                state.layout, v, state.codec(v), f, v.projection.join_key_map, ttl=state.cfg.enforce_view_ttl
            )
            for v, f in grouped_refs
        ]
        n = len(next(iter(join_key_values.values()), []))
        columns = {
            k: [feast_value_type_to_python_type(p) for p in vals] for k, vals in join_key_values.items()
        }
        return reads, columns, n

    @staticmethod
    def _append_results(response, grouped_refs, reads, results, full_feature_names, with_version):
        for (view, _), read, result in zip(grouped_refs, reads, results, strict=True):
            prefix = view.projection.name_to_use() + "__" if full_feature_names else ""
            response.metadata.feature_names.val.extend(prefix + f for f in read.features)
            for vt, values in zip(read.types, result.values, strict=True):
                response.results.append(feature_vector(values, vt, result.statuses, result.event_us))
            if with_version:
                meta = response.metadata.feature_view_metadata.add()
                meta.name = view.projection.name_alias or view.projection.name
                meta.version = getattr(view, "current_version_number", 0) or 0

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
        reads, columns, n = self._generic_reads(state, grouped_refs, join_key_values)
        self._append_results(
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
        reads, columns, n = self._generic_reads(state, grouped_refs, join_key_values)
        results = await state.read_async(reads, columns, n)
        self._append_results(
            online_features_response,
            grouped_refs,
            reads,
            results,
            full_feature_names,
            include_feature_view_version_metadata,
        )

    def _online_read_rows(self, state, table, entity_keys, requested_features):
        read = view_read(
            state.layout, table, state.codec(table), requested_features, ttl=state.cfg.enforce_view_ttl
        )
        columns: dict[str, list] = {jk: [] for jk in read.join_keys}
        for ek in entity_keys:
            found = dict(zip(ek.join_keys, ek.entity_values, strict=True))
            for jk, col in columns.items():
                col.append(feast_value_type_to_python_type(found[jk]))
        return read, columns, len(entity_keys)

    @staticmethod
    def _rows_out(read: ViewRead, result: ViewResult):
        protos = [to_proto(values, vt) for values, vt in zip(result.values, read.types, strict=True)]
        out = []
        for i, status in enumerate(result.statuses):
            if status != PRESENT:
                out.append((None, None))
                continue
            ts = datetime.fromtimestamp(result.event_us[i] / 1_000_000, tz=UTC)
            out.append((ts, {f: protos[j][i] for j, f in enumerate(read.features)}))
        return out

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ):
        state = self.state(config)
        read, columns, n = self._online_read_rows(state, table, entity_keys, requested_features)
        return self._rows_out(read, state.read([read], columns, n)[0])

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ):
        state = self.state(config)
        read, columns, n = self._online_read_rows(state, table, entity_keys, requested_features)
        return self._rows_out(read, (await state.read_async([read], columns, n))[0])

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
        state = self.state(config)
        for table in tables_to_delete:
            deleted = self._delete_matching(state, state.layout.view_pattern(table.name))
            if is_aggregation(table):  # and the offset marks beside its tiles
                self._delete_matching(state, state.layout.view_pattern(table.name) + MARKS)
            with translated(state.endpoint):
                stale = [
                    f
                    for f in state.client.hkeys(state.layout.schemas_key)
                    if f.decode().rsplit(":", 1)[0] == table.name
                ]
                if stale:
                    state.client.hdel(state.layout.schemas_key, *stale)
            state.writer.forget(table.name)
            logger.info("deleted %d online rows of feature view %s", deleted, table.name)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]):
        state = self.state(config)
        deleted = self._delete_matching(state, state.layout.project_pattern())
        logger.info("teardown deleted %d online keys of project %s", deleted, config.project)
        state.writer.forget(None)

    @staticmethod
    def _delete_matching(state: StoreState, pattern: str) -> int:
        """SCAN (incremental, COUNT-bounded, on every primary) + UNLINK per page: never blocks
        the server for long, unlike KEYS or one huge DEL."""
        deleted = 0
        page: list[bytes] = []
        with translated(state.endpoint):
            for key in state.client.scan_iter(match=pattern, count=state.cfg.delete_scan_count):
                page.append(key)
                if len(page) >= state.cfg.delete_scan_count:
                    deleted += state.client.unlink(*page)
                    page.clear()
            if page:
                deleted += state.client.unlink(*page)
        return deleted


def _no_rows(view: FeatureView) -> None:
    """Aggregation views hold tiles, not rows: a row write would be wrong, so it is refused."""
    if is_aggregation(view):
        raise OnlineWriteError(
            f"{view.name!r} is an aggregation view: its online values are tiles of raw events",
            hint="they are written by `fs ingest run` and rebuilt by `fs materialize` (docs/aggregations.md)",
        )


def _arrow_micros(col: pa.ChunkedArray) -> pa.Array:
    """``arrow_epoch_micros``, with a non-timestamp column reported as a bad write."""
    try:
        return arrow_epoch_micros(col)
    except TypeError:
        raise OnlineWriteError(f"timestamp column has arrow type {col.type}, expected a timestamp") from None
