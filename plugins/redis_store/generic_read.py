"""Reads in the shapes Feast's generic path expects (on-demand or versioned views, proto entity values,
``online_read``): the same one-round-trip reads as the fast path, answered as protos. The store's sync
and async methods share these steps and differ only in how they await the read."""

from __future__ import annotations

from datetime import UTC, datetime

from feast.type_map import feast_value_type_to_python_type

from fs_platform.plugins.redis_store.codec import to_proto
from fs_platform.plugins.redis_store.reader import PRESENT, ViewRead, ViewResult
from fs_platform.plugins.redis_store.response import feature_vector
from fs_platform.plugins.redis_store.state import view_read


def generic_reads(state, grouped_refs, join_key_values):
    """(reads, entity columns, n) of Feast's per-view request (proto entity values)."""
    reads = [
        view_read(
            state.layout, v, state.codec(v), f, v.projection.join_key_map, ttl=state.cfg.enforce_view_ttl
        )
        for v, f in grouped_refs
    ]
    n = len(next(iter(join_key_values.values()), []))
    columns = {k: [feast_value_type_to_python_type(p) for p in vals] for k, vals in join_key_values.items()}
    return reads, columns, n


def append_results(response, grouped_refs, reads, results, full_feature_names, with_version):
    """Add the views' results to Feast's response proto, view by view (its generic path's layout)."""
    for (view, _), read, result in zip(grouped_refs, reads, results, strict=True):
        prefix = view.projection.name_to_use() + "__" if full_feature_names else ""
        response.metadata.feature_names.val.extend(prefix + f for f in read.features)
        for vt, values in zip(read.types, result.values, strict=True):
            response.results.append(feature_vector(values, vt, result.statuses, result.event_us))
        if with_version:
            meta = response.metadata.feature_view_metadata.add()
            meta.name = view.projection.name_alias or view.projection.name
            meta.version = getattr(view, "current_version_number", 0) or 0


def online_read_rows(state, table, entity_keys, requested_features):
    """(read, entity columns, n) of ``online_read``'s entity key protos."""
    read = view_read(
        state.layout, table, state.codec(table), requested_features, ttl=state.cfg.enforce_view_ttl
    )
    columns: dict[str, list] = {jk: [] for jk in read.join_keys}
    for ek in entity_keys:
        found = dict(zip(ek.join_keys, ek.entity_values, strict=True))
        for jk, col in columns.items():
            col.append(feast_value_type_to_python_type(found[jk]))
    return read, columns, len(entity_keys)


def rows_out(read: ViewRead, result: ViewResult):
    """``online_read``'s answer: ``(event time, {feature: value proto})`` per row, None twice if absent."""
    protos = [to_proto(values, vt) for values, vt in zip(result.values, read.types, strict=True)]
    out = []
    for i, status in enumerate(result.statuses):
        if status != PRESENT:
            out.append((None, None))
            continue
        ts = datetime.fromtimestamp(result.event_us[i] / 1_000_000, tz=UTC)
        out.append((ts, {f: protos[j][i] for j, f in enumerate(read.features)}))
    return out
