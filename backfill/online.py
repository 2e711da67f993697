"""Online side of a chunk, and the adapters to the platform's stores.

Reads go through the configured Feast offline store (``pull_latest_from_table_or_query``: the latest
row per entity in the chunk); writes go through the fs Redis store's ``write_arrow``, which is
event-time ordered and atomic per key (a Lua script), so a materialization or backfill never
overwrites a fresher value written by the stream, and reports written vs skipped rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from fs_platform.backfill.model import Interval
from fs_platform.backfill.offline import collect
from fs_platform.errors import ConfigError
from fs_platform.feast_compat import column_names, provider
from fs_platform.field_mapping import mapped_name, to_mapped_names
from fs_platform.timeutil import MICROSECOND

_STAMP_COLUMN = "__fs_created"  # created time of rows whose view has no created column


@dataclass(frozen=True)
class Pulled:
    data: pa.Table
    source_version: int | None


@dataclass(frozen=True)
class Written:
    written: int
    skipped: int


def _provider(store):
    return provider(store)


def redis_store(store):
    """The fs ``RedisOnlineStore`` behind ``store``; other online stores are not supported here."""
    from fs_platform.plugins.redis_store.online_store import RedisOnlineStore

    online = _provider(store).online_store
    if not isinstance(online, RedisOnlineStore):
        raise ConfigError(
            f"backfill and materialize need the fs Redis online store, not {type(online).__name__}",
            hint="set online_store.type: fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
        )
    return online


def lease_client(store):
    """(Redis client, key namespace, endpoint) of the online store: where leases live."""
    return redis_store(store).lease_client(store.config)


def pull_latest(store, view, interval: Interval) -> Pulled:
    """The latest row per entity with event time in ``[start, end)``, feature names mapped."""
    entities = [store.get_entity(name) for name in view.entities if name != "__dummy"]
    keys, features, ts_field, created = column_names(view, entities)
    # Feast pulls are inclusive at both ends; Delta keeps microseconds, so end - 1us is half-open.
    job = _provider(store).offline_store.pull_latest_from_table_or_query(
        config=store.config,
        data_source=view.batch_source,
        join_key_columns=keys,
        feature_name_columns=features,
        timestamp_field=ts_field,
        created_timestamp_column=created,
        start_date=interval.start,
        end_date=interval.end - MICROSECOND,
    )
    table = collect(job)
    table = to_mapped_names(table, view.batch_source)
    versions = getattr(job, "source_versions", {}) or {}
    return Pulled(table, versions.get(view.batch_source.name))


def rebuild_tiles(store, view, interval: Interval) -> Pulled:
    """An aggregation view's tiles for ``interval`` recomputed by Spark from the raw Delta events.

    The range is widened to whole tiles of the largest size (every tile size divides it), so a tile
    is always rebuilt from all its events, whichever chunk it straddles. Chunks that end before
    anything could still be read online (the longest window plus its tile) produce no tiles."""
    from fs_platform.aggregation.spec import spec_of
    from fs_platform.plugins.delta.aggregation_tiles import tiles
    from fs_platform.plugins.delta.engine import get_spark
    from fs_platform.plugins.delta.tables import current_version, read_source
    from fs_platform.timeutil import epoch_micros, from_epoch_micros, utcnow

    spec = spec_of(view)
    if epoch_micros(interval.end) < epoch_micros(utcnow()) - spec.horizon_us:
        return Pulled(pa.table({}), None)
    size = max(g.tile_us for g in spec.granularities)
    start_us = epoch_micros(interval.start) // size * size
    end_us = -(-epoch_micros(interval.end) // size) * size
    version = current_version(view.batch_source, store.config)
    events = read_source(get_spark(store.config), view.batch_source, store.config, version)
    frame = tiles(events, spec, from_epoch_micros(start_us), from_epoch_micros(end_us))
    return Pulled(frame.toArrow(), version)


def write_tiles(store, view, data: pa.Table) -> Written:
    """Rebuilt tiles into Redis; a stored tile that counted more events (stream ahead of Delta) stays."""
    if data.num_rows == 0:
        return Written(0, 0)
    result = redis_store(store).write_tiles(store.config, view, data)
    return Written(result.applied, result.duplicate)


def write(store, view, data: pa.Table, *, created_at: datetime | None = None) -> Written:
    """Event-time-ordered write; stale (older than stored) and expired (past ttl) rows are skipped.

    ``data`` has the batch source's column names or the mapped ones (the source's
    ``field_mapping``, timestamp columns included). ``created_at`` (backfills: the run's start)
    replaces every row's created timestamp, so a corrected row with an unchanged event time
    replaces the stored one, while a stored row with a newer event time is still kept.
    """
    if data.num_rows == 0:
        return Written(0, 0)
    source = view.batch_source
    data = to_mapped_names(data, source)
    event_column = mapped_name(source, source.timestamp_field)
    if event_column not in data.column_names:  # already mapped by the caller, or not at all
        event_column = source.timestamp_field
    created = source.created_timestamp_column or None
    created_column = mapped_name(source, created) if created else None
    if created_column and created_column not in data.column_names and created in data.column_names:
        created_column = created
    if created_at is not None:
        created_column = created_column or _STAMP_COLUMN
        stamp = pa.array([created_at] * data.num_rows, pa.timestamp("us", tz="UTC"))
        if created_column in data.column_names:
            data = data.set_column(data.column_names.index(created_column), created_column, stamp)
        else:
            data = data.append_column(created_column, stamp)
    result = redis_store(store).write_arrow(store.config, view, data, event_column, created_column)
    return Written(result.written, result.skipped_stale + result.skipped_expired)
