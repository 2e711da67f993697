"""Freshness: per view, how old the newest data is offline and online, against its SLA.

Offline: the max event time of the view's Delta table, from the Delta log's file stats (no scan).

Online: the online store has no cheap "newest row" query, so we probe it through Feast's own
online-read interface (works for any online store) with the ``probe`` entities whose offline
rows are newest, and take the newest event time served. Stream writes land online and offline
together (push mode ONLINE_AND_OFFLINE), so those entities are the ones to look at; if they are
stale online, serving is stale.

Aggregation views (docs/aggregations.md): offline, the newest raw event. Online they hold tiles
merged as of the request time, so a read carries no event time to age: their online side is not
measured here (``online`` is None); `fs parity check VIEW` compares their online values with Spark's
at the same instant, and the ingestor's ``fs_ingest_freshness_seconds`` / ``fs_ingest_consumer_lag``
show whether the stream keeps up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.feast_compat import provider
from fs_platform.governance import metrics, offline
from fs_platform.metadata import freshness_sla
from fs_platform.timeutil import utcnow
from fs_platform.views import feature_view


@dataclass(frozen=True)
class StoreFreshness:
    newest: datetime | None
    age_seconds: float | None
    breached: bool  # no data counts as a breach


@dataclass(frozen=True)
class ViewFreshness:
    view: str
    sla_seconds: float | None
    offline: StoreFreshness
    online: StoreFreshness | None  # None for views not served online, and for aggregation views (see above)

    @property
    def breached(self) -> bool:
        return self.offline.breached or bool(self.online and self.online.breached)


@dataclass(frozen=True)
class FreshnessReport:
    checked_at: datetime
    views: list[ViewFreshness]

    @property
    def breached(self) -> list[str]:
        return [v.view for v in self.views if v.breached]


def _state(newest: datetime | None, now: datetime, sla: float | None) -> StoreFreshness:
    if newest is None:
        return StoreFreshness(None, None, True)
    age = (now - newest).total_seconds()
    return StoreFreshness(newest, age, sla is not None and age > sla)


def _newest_entities(store, vs: offline.ViewSource, probe: int) -> pa.Table:
    """Join-key rows of the ``probe`` most recently updated entities (offline)."""
    newest = offline.newest_event_time(store, vs.view.name)
    if newest is None:
        return pa.table({k: [] for k in vs.join_keys})
    # Read only the recent tail: the last few SLA periods (or a day) before the newest row.
    sla = freshness_sla(vs.view)
    lookback = max(sla.total_seconds() * 4, 86400) if sla else 86400
    recent = offline.read_window(store, vs.view.name, newest - timedelta(seconds=lookback), None)
    if recent.num_rows == 0:
        return pa.table({k: [] for k in vs.join_keys})
    recent = recent.sort_by([(vs.timestamp_field, "descending")]).select(list(vs.join_keys))
    keys = recent.group_by(list(vs.join_keys), use_threads=False).aggregate([])
    # group_by keeps first-appearance order, i.e. newest first.
    return keys.slice(0, probe)


def online_newest(store, view: str, probe: int = 100) -> datetime | None:
    """Newest event time the online store serves for the most recently updated entities."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.type_map import python_values_to_proto_values

    vs = offline.view_source(store, view)
    keys = _newest_entities(store, vs, probe)
    if keys.num_rows == 0:
        return None
    types = {c.name: c.dtype.to_value_type() for c in vs.view.entity_columns}
    columns = {k: python_values_to_proto_values(keys.column(k).to_pylist(), types[k]) for k in vs.join_keys}
    entity_keys = [
        EntityKeyProto(join_keys=list(vs.join_keys), entity_values=[columns[k][i] for k in vs.join_keys])
        for i in range(keys.num_rows)
    ]
    rows = provider(store).online_read(store.config, vs.view, entity_keys, None)
    # A miss is (None, None) — or, in Feast's stock Redis store, an epoch-0 timestamp.
    stamps = [ts for ts, values in rows if values and ts is not None and ts.timestamp() > 0]
    if not stamps:
        return None
    newest = max(stamps)
    return newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest.astimezone(UTC)


def check_view(store, view: str, now: datetime | None = None, probe: int = 100) -> ViewFreshness:
    now = now or utcnow()
    fv = feature_view(store, view)
    sla = freshness_sla(fv)
    sla_s = sla.total_seconds() if sla else None
    off = _state(offline.newest_event_time(store, view), now, sla_s)
    measured = fv.online and not is_aggregation(fv)  # an aggregation view's reads carry no event time
    on = _state(online_newest(store, view, probe), now, sla_s) if measured else None
    result = ViewFreshness(view, sla_s, off, on)
    _export(result)
    return result


def check_freshness(
    store, views: list[str] | None = None, now: datetime | None = None, probe: int = 100
) -> FreshnessReport:
    """Freshness of ``views`` (default: every batch/stream view with a freshness SLA)."""
    now = now or utcnow()
    names = views or sorted(v.name for v in store.list_feature_views() if freshness_sla(v))
    return FreshnessReport(now, [check_view(store, n, now, probe) for n in names])


def _export(v: ViewFreshness) -> None:
    if v.sla_seconds is not None:
        metrics.FRESHNESS_SLA.labels(v.view).set(v.sla_seconds)
    for where, state in (("offline", v.offline), ("online", v.online)):
        if state is None:
            continue
        if state.age_seconds is not None:
            metrics.FRESHNESS_AGE.labels(v.view, where).set(state.age_seconds)
        metrics.FRESHNESS_BREACH.labels(v.view, where).set(1 if state.breached else 0)
