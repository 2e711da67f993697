"""What the offline store holds for the logged rows ``skew`` compares: a point-in-time retrieval of
every keyed row (at its served time, and at each served value's event time), and a semi-join on each
plain view's Delta source for the served events."""

from __future__ import annotations

import pyarrow as pa

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.parity.skew_log import Parsed, keyed, served_event
from fs_platform.parity.targets import Target

_ROW = "__fs_skew_row"
_EVENT = "__fs_event_ts"


def offline_values(store, targets: list[Target], parsed: Parsed, pii_keys) -> tuple[dict, dict]:
    """One point-in-time retrieval: every keyed row at its served time, and (plain views) at each
    served value's event time. ``{(view, feature): (at_served, at_event)}`` value lists by row."""
    import pandas as pd

    n = len(parsed.served_us)
    src, stamps = [], []  # per retrieval row: the logged row it is for, and its timestamp
    base: dict[int, int] = {}
    at_event: dict[tuple[str, int], int] = {}
    for i in range(n):
        if any(keyed(parsed, i, t, pii_keys) for t in targets):
            base[i] = len(src)
            src.append(i)
            stamps.append(int(parsed.served_us[i]))
    for t in targets:
        if is_aggregation(t.view):
            continue
        for i in base:
            us = served_event(parsed, i, t) if keyed(parsed, i, t, pii_keys) else None
            if us is not None and us != parsed.served_us[i]:
                at_event[(t.name, i)] = len(src)
                src.append(i)
                stamps.append(us)
    if not src:
        return {}, {}
    keys = list(dict.fromkeys(k for t in targets for k in t.join_keys))
    frame = {_ROW: list(range(len(src)))}
    for k in keys:
        frame[k] = [parsed.entities[i].get(k) for i in src]
    frame["event_timestamp"] = pd.to_datetime(stamps, unit="us", utc=True)
    refs = [f"{t.name}:{f}" for t in targets for f in t.features if f not in t.sensitive]
    job = store.get_historical_features(entity_df=pd.DataFrame(frame), features=refs, full_feature_names=True)
    result = job.to_arrow()
    versions = getattr(job, "source_versions", {}) or {}
    position = {r: j for j, r in enumerate(result[_ROW].to_pylist())}
    from fs_platform.plugins.serving.served_rows import _jsonable

    out = {}
    for t in targets:
        for f, vt in zip(t.features, t.types, strict=True):
            if f in t.sensitive:
                continue
            column = _jsonable(result[f"{t.name}__{f}"].to_pylist(), vt)
            served = [column[position[base[i]]] if i in base else None for i in range(n)]
            event = [
                column[position[at_event[(t.name, i)]]] if (t.name, i) in at_event else None for i in range(n)
            ]
            out[(t.name, f)] = (served, event)
    return out, versions


def offline_events(store, targets: list[Target], parsed: Parsed, pii_keys) -> dict[str, set[tuple]]:
    """Per plain view, the served ``(keys..., event µs)`` the offline table holds a row for (a semi-join
    on the view's Delta source): tells a served event offline never got from one it has another value for."""
    from fs_platform.parity.spark_io import SparkIO, view_source
    from fs_platform.plugins.delta.engine import get_engine
    from fs_platform.plugins.delta.retrieval import col

    io, out = None, {}
    for t in targets:
        if is_aggregation(t.view):
            continue
        wanted = {}
        for i in range(len(parsed.served_us)):
            us = served_event(parsed, i, t) if keyed(parsed, i, t, pii_keys) else None
            if us is not None:
                wanted[(*(parsed.entities[i][k] for k in t.join_keys), us)] = None
        if not wanted:
            continue
        io = io or SparkIO(get_engine(store.config), store.config)
        src = view_source(t, store.config)
        plan = src.plan
        columns = {k: [w[j] for w in wanted] for j, k in enumerate(plan.join_keys)}
        columns[_EVENT] = pa.array([w[-1] for w in wanted], pa.timestamp("us", tz="UTC"))
        rows = io.read(src).select(
            *[col(s).alias(k) for s, k in zip(plan.source_keys, plan.join_keys, strict=True)],
            col(plan.timestamp_field).cast("timestamp").alias(_EVENT),
        )
        found = rows.join(
            io.upload(pa.table(columns)), on=[*plan.join_keys, _EVENT], how="left_semi"
        ).distinct()
        table = io.collect(found)
        us = table[_EVENT].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
        keys = [table[k].to_pylist() for k in plan.join_keys]
        out[t.name] = {(*k, u) for *k, u in zip(*keys, us, strict=True)}
    return out
