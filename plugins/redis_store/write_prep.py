"""Rows of a plain view to a ``PreparedBatch`` (writer.py): Feast's proto rows (``write_batch``, sync and
async) and Arrow tables (``write_arrow``) become keys plus encoded rows. Aggregation views are refused:
their online values are tiles (tile_store.py)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import OnlineWriteError
from fs_platform.plugins.redis_store.reader import ViewRead, build_keys
from fs_platform.plugins.redis_store.state import StoreState
from fs_platform.plugins.redis_store.writer import PreparedBatch, prepare, prepare_arrow
from fs_platform.timeutil import arrow_epoch_micros, epoch_micros


def prepare_protos(state: StoreState, table: FeatureView, data) -> PreparedBatch:
    """Feast-shaped rows ``(entity key, values, event time, created time)`` of ``table``."""
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


def prepare_table(
    state: StoreState, table: FeatureView, data: pa.Table, event_column, created_column
) -> PreparedBatch:
    """An Arrow table of ``table``'s rows; timestamp columns default to the view's batch source's."""
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
