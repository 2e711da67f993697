"""``skew``: what models were served (the served-feature log) vs what training would have seen.

    from fs_platform.parity.skew import skew
    report = skew(platform.store, "fraud_model_v2", since=timedelta(hours=2), by="model_version")
    report.verdict        # "ok" | "breach" | "no_data"

The logged rows of one feature service in ``[until - since, until)`` (at most ``max_rows``, a seeded
sample) are recomputed by the offline store's own point-in-time retrieval
(``get_historical_features``) with each row's entity keys at its served time; rows served a value
of a plain view are also retrieved at the served value's event time, and a semi-join on the view's
Delta source says whether offline holds the served event at all. Each (row, feature) gets a parity
class (``fs_platform.parity.classify.Outcome``), values compared by ``fs_platform.parity.compare``::

    served nothing (NOT_FOUND), offline nothing                 -> matched
    served nothing, offline a value                             -> missing_online
    served nothing (OUTSIDE_MAX_AGE: an older row), offline one -> online_stale
    served value equals offline at the served time              -> matched
    otherwise, a plain view's served event is:
      not in the offline table, younger than the allowed lag   -> online_ahead (tolerated: offline catching up)
      not in the offline table                                  -> missing_offline
      there with the served value (and a newer one by then)     -> online_stale
      there with another value                                  -> value_mismatch | type_mismatch
      older than the ttl at the served time                     -> ttl_expired
      later than the served time + 60 s                         -> online_future
    an aggregation view (tiles merged at the read)              -> value_mismatch | type_mismatch

Rows a request could not read (INVALID: a failed read, the breaker) are not compared; PII-classified
features (logged hashed or not at all) and rows whose join key was logged hashed are skipped and
said so. Each group is a ``ParityReport`` (one ``ViewReport`` per view), so the CLI, JSON and
thresholds are those of ``fs parity check``.

``by="model_version"`` (or ``model_name``, ``model``): one report per model version, and, for exactly
two versions, a direct comparison of the features served to both for the same request
(``X-Request-Id`` sent with both: shadow traffic) — a canary without shared requests is compared
through each version's own report.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import InvalidArgument, ParityError
from fs_platform.parity.check import FUTURE_SKEW_US
from fs_platform.parity.classify import Outcome
from fs_platform.parity.compare import Tolerances, compare_column
from fs_platform.parity.report import MASK, Example, FeatureStats, ParityReport, Timings, ViewReport
from fs_platform.parity.targets import Target, resolve
from fs_platform.timeutil import duration_micros, epoch_micros, from_epoch_micros, utcnow

log = logging.getLogger(__name__)
BY = {
    "model_version": ("model_version",),
    "model_name": ("model_name",),
    "model": ("model_name", "model_version"),
}
UNKNOWN = "(none)"
_NOT_SERVED = {"NOT_FOUND", "OUTSIDE_MAX_AGE"}
_ROW = "__fs_skew_row"
_EVENT = "__fs_event_ts"


@dataclass
class PairStats:
    """Features served to two model versions for the same request and entity row."""

    a: str
    b: str
    rows: int
    features: list[FeatureStats]

    @property
    def mismatched(self) -> int:
        return sum(f.mismatched for f in self.features)

    @property
    def compared(self) -> int:
        return sum(f.compared for f in self.features)


@dataclass
class SkewReport:
    feature_service: str
    start: datetime
    end: datetime
    by: str | None
    location: str
    logged_rows: int  # rows in the window before sampling
    groups: dict[str, ParityReport]
    pair: PairStats | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    max_mismatch_rate: float = 0.0

    @property
    def breach(self) -> bool:
        pair = (
            self.pair is not None
            and self.pair.compared
            and (self.pair.mismatched / self.pair.compared > self.max_mismatch_rate)
        )
        return any(g.breach for g in self.groups.values()) or bool(pair)

    @property
    def verdict(self) -> str:
        if self.breach:
            return "breach"
        if not self.groups or any(g.verdict == "no_data" for g in self.groups.values()):
            return "no_data"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        pair = None
        if self.pair is not None:
            pair = {
                "a": self.pair.a,
                "b": self.pair.b,
                "rows": self.pair.rows,
                "compared": self.pair.compared,
                "mismatched": self.pair.mismatched,
                "features": [
                    {"feature": f.feature, "compared": f.compared, "mismatched": f.mismatched}
                    for f in self.pair.features
                ],
            }
        return {
            "verdict": self.verdict,
            "feature_service": self.feature_service,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "by": self.by,
            "table": self.location,
            "logged_rows": self.logged_rows,
            "groups": {name: g.to_dict() for name, g in self.groups.items()},
            "pair": pair,
            "skipped": dict(self.skipped),
        }


def log_location(repo_path: str | Path, table: str | None = None) -> str:
    """The served-feature log's location: ``table``, else ``served_log.path`` of ``<repo>/serve.yaml``."""
    from fs_platform.plugins.delta.tables import resolve_path
    from fs_platform.plugins.serving.settings import load

    return resolve_path(table or load(Path(repo_path)).served_log.path, repo_path)


def read_log(location: str, feature_service: str, start: datetime, end: datetime) -> pa.Table:
    """Logged rows of one feature service served in ``[start, end)``."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(location)
    except TableNotFoundError:
        raise ParityError(
            f"no served-feature log at {location}",
            hint="enable it with served_log.sample in serve.yaml (docs/serving.md), or pass --table",
        ) from None
    days, day = [], start.date()
    while day <= end.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    ts = pa.timestamp("us", tz="UTC")
    where = (
        ds.field("served_date").isin(days)
        & (ds.field("feature_service") == feature_service)
        & (ds.field("served_at") >= pa.scalar(start, ts))
        & (ds.field("served_at") < pa.scalar(end, ts))
    )
    return table.to_pyarrow_dataset().to_table(filter=where)


def skew(
    store,
    feature_service: str,
    *,
    since: timedelta,
    until: datetime | None = None,
    by: str | None = None,
    table: str | None = None,
    max_rows: int = 10_000,
    seed: int = 0,
    tolerances: Tolerances | None = None,
    max_mismatch_rate: float = 0.0,
    examples: int = 5,
) -> SkewReport:
    """Compare the logged served values of ``feature_service`` with the offline recomputation."""
    if by is not None and by not in BY:
        raise InvalidArgument(f"by: not one of {', '.join(BY)}: {by!r}")
    if max_rows < 1:
        raise InvalidArgument(f"max_rows must be at least 1, got {max_rows}")
    started = time.perf_counter()
    end = until or utcnow()
    start = end - since
    location = log_location(store.repo_path, table)
    targets, skipped = resolve(store, feature_service=feature_service)
    logged = read_log(location, feature_service, start, end)
    rows = _sample(logged, max_rows, seed)
    t_read = time.perf_counter() - started
    groups_of = _groups(rows, by)
    _, pii_keys = _sensitive(store)
    for t in targets:
        for f in sorted(set(t.features) & t.sensitive):
            skipped[f"{t.name}.{f}"] = "PII-classified: logged hashed or not at all, not comparable"
    parsed = _Parsed.of(rows)
    t0 = time.perf_counter()
    offline, versions = _offline(store, targets, parsed, pii_keys)
    held = _offline_events(store, targets, parsed, pii_keys)
    t_offline = time.perf_counter() - t0
    now_us = epoch_micros(utcnow())
    tol = tolerances or Tolerances()
    reports: dict[str, ParityReport] = {}
    for name, members in groups_of.items():
        t1 = time.perf_counter()
        views = [
            _view_report(
                t,
                parsed,
                members,
                offline,
                held.get(t.name, set()),
                versions,
                tol,
                now_us,
                examples,
                pii_keys,
            )
            for t in targets
        ]
        for v in views:
            v.breach = v.total().breach_rate > max_mismatch_rate
        timings = Timings(t_read, 0.0, t_offline, time.perf_counter() - t1, time.perf_counter() - started)
        reports[name] = ParityReport(end, seed, max_rows, max_mismatch_rate, views, timings, dict(skipped))
    pair = _pair(targets, parsed, groups_of, tol) if by and len(groups_of) == 2 else None
    return SkewReport(
        feature_service, start, end, by, location, logged.num_rows, reports, pair, skipped, max_mismatch_rate
    )


def _sample(logged: pa.Table, max_rows: int, seed: int) -> pa.Table:
    if logged.num_rows <= max_rows:
        return logged
    picked = sorted(random.Random(seed).sample(range(logged.num_rows), max_rows))
    return logged.take(pa.array(picked))


def _groups(rows: pa.Table, by: str | None) -> dict[str, np.ndarray]:
    if by is None:
        return {"all": np.arange(rows.num_rows)} if rows.num_rows else {}
    columns = [rows[c].to_pylist() for c in BY[by]]
    names = [
        "@".join(v or UNKNOWN for v in parts) if len(parts) > 1 else (parts[0] or UNKNOWN)
        for parts in zip(*columns, strict=True)
    ]
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        out.setdefault(name, []).append(i)
    return {k: np.array(v) for k, v in sorted(out.items())}


def _sensitive(store):
    from fs_platform.plugins.serving.served_log import sensitive_names

    return sensitive_names(store)


@dataclass
class _Parsed:
    """The sampled log rows, JSON columns decoded."""

    request_id: list[str]
    row: list[int]
    served_us: np.ndarray
    entities: list[dict]
    features: list[dict]
    statuses: list[dict]
    event_us: list[dict]

    @classmethod
    def of(cls, rows: pa.Table) -> _Parsed:
        def js(name):
            return [orjson.loads(x) for x in rows[name].to_pylist()]

        served = (
            rows["served_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
            if rows.num_rows
            else np.zeros(0)
        )
        return cls(
            rows["request_id"].to_pylist(),
            rows["row"].to_pylist(),
            served.astype(np.int64),
            js("entities"),
            js("features"),
            js("statuses"),
            js("event_us"),
        )

    def name(self, i: int, target: Target, feature: str) -> str:
        full = f"{target.name}__{feature}"
        return full if full in self.features[i] else feature


def _keyed(parsed: _Parsed, i: int, target: Target, pii_keys) -> bool:
    ents = parsed.entities[i]
    return all(k in ents and k not in pii_keys for k in target.join_keys)


def _offline(store, targets: list[Target], parsed: _Parsed, pii_keys) -> tuple[dict, dict]:
    """One point-in-time retrieval: every keyed row at its served time, and (plain views) at each
    served value's event time. ``{(view, feature): (at_served, at_event)}`` value lists by row."""
    import pandas as pd

    n = len(parsed.served_us)
    src, stamps = [], []  # per retrieval row: the logged row it is for, and its timestamp
    base: dict[int, int] = {}
    at_event: dict[tuple[str, int], int] = {}
    for i in range(n):
        if any(_keyed(parsed, i, t, pii_keys) for t in targets):
            base[i] = len(src)
            src.append(i)
            stamps.append(int(parsed.served_us[i]))
    for t in targets:
        if is_aggregation(t.view):
            continue
        for i in base:
            us = _served_event(parsed, i, t) if _keyed(parsed, i, t, pii_keys) else None
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
    from fs_platform.plugins.serving.served_log import _jsonable

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


def _offline_events(store, targets: list[Target], parsed: _Parsed, pii_keys) -> dict[str, set[tuple]]:
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
            us = _served_event(parsed, i, t) if _keyed(parsed, i, t, pii_keys) else None
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


def _served_event(parsed: _Parsed, i: int, t: Target) -> int | None:
    """The served event time of the view's row (its features share it): the first present one."""
    for f in t.features:
        us = parsed.event_us[i].get(parsed.name(i, t, f))
        if us:
            return int(us)
    return None


def _view_report(
    t: Target,
    parsed: _Parsed,
    members: np.ndarray,
    offline: dict,
    held: set,
    versions: dict,
    tol: Tolerances,
    now_us: int,
    max_examples: int,
    pii_keys,
) -> ViewReport:
    ttl_us = duration_micros(t.ttl) if t.ttl else None
    lag_us = duration_micros(t.allowed_lag)
    aggregated = is_aggregation(t.view)
    plain = not aggregated  # a served event time is a row's event (tiles are merged at the read)
    rows = np.array([i for i in members if _keyed(parsed, i, t, pii_keys)], dtype=np.int64)
    stats, candidates = [], []
    with_data = np.zeros(len(rows), dtype=bool)
    for f, vt in zip(t.features, t.types, strict=True):
        if f in t.sensitive:  # logged hashed or not at all: listed in the report's skipped
            continue
        s = FeatureStats(f, vt.name, False)
        if not len(rows):
            stats.append(s)
            continue
        at_served, at_event = offline[(t.name, f)]
        names = [parsed.name(i, t, f) for i in rows]
        status = [parsed.statuses[i].get(nm, "INVALID") for i, nm in zip(rows, names, strict=True)]
        keep = np.array([st != "INVALID" for st in status], dtype=bool)
        served = [parsed.features[i].get(nm) for i, nm in zip(rows, names, strict=True)]
        event = np.array(
            [parsed.event_us[i].get(nm) or 0 for i, nm in zip(rows, names, strict=True)], np.int64
        )
        off_t = [at_served[i] for i in rows]
        off_e = [at_event[i] for i in rows]
        served_at = parsed.served_us[rows]
        idx = np.arange(len(rows))
        codes_t, score = compare_column(vt, served, off_t, idx, tol.for_feature(t.name, f))
        equal_t = codes_t == Outcome.MATCHED
        has_e = np.array([v is not None for v in off_e]) & plain
        codes_e, _ = compare_column(vt, served, off_e, idx, tol.for_feature(t.name, f))
        equal_e = has_e & (codes_e == Outcome.MATCHED)
        not_served = np.array([st in _NOT_SERVED for st in status], dtype=bool)
        off_none = np.array([v is None for v in off_t], dtype=bool)
        has_event = np.array(
            [
                (*(parsed.entities[i][k] for k in t.join_keys), int(e)) in held
                for i, e in zip(rows, event, strict=True)
            ]
        )
        out = codes_t.copy()  # matched | value_mismatch | type_mismatch (aggregations: the whole story)
        tolerated = np.zeros(len(rows), dtype=bool)
        present = ~not_served
        wrong = present & ~equal_t
        if plain:
            lost = wrong & ~has_event  # offline never got the served event
            out[lost] = Outcome.MISSING_OFFLINE
            ahead = lost & (event >= now_us - lag_us)  # ... yet: within the allowed lag
            out[ahead] = Outcome.ONLINE_AHEAD
            tolerated[ahead] = True
            # offline holds the served event with the served value, and a newer one by the served time
            out[wrong & has_event & equal_e] = Outcome.ONLINE_STALE
            same = wrong & has_event & ~equal_e  # the same event, another value
            out[same] = codes_e[same]
            if ttl_us:
                out[present & (event > 0) & (event < served_at - ttl_us)] = Outcome.TTL_EXPIRED
            out[present & (event > served_at + FUTURE_SKEW_US)] = Outcome.ONLINE_FUTURE
        else:
            out[wrong & off_none] = Outcome.MISSING_OFFLINE
        out[not_served] = np.where(off_none[not_served], Outcome.MATCHED, Outcome.MISSING_ONLINE)
        stale = not_served & ~off_none & np.array([st == "OUTSIDE_MAX_AGE" for st in status])
        out[stale] = Outcome.ONLINE_STALE
        out, tolerated, score = out[keep], tolerated[keep], score[keep]
        with_data[keep] |= ~(not_served[keep] & off_none[keep])
        s.compared = len(out)
        for o in Outcome:
            if o is not Outcome.MATCHED:
                s.counts[o.label] = int(np.count_nonzero(out == o))
        s.tolerated = int(np.count_nonzero(tolerated & (out != Outcome.MATCHED)))
        stats.append(s)
        kept = np.flatnonzero(keep)
        for o in np.unique(out[out != Outcome.MATCHED]):
            worst = np.flatnonzero(out == o)
            seen: set[str] = set()  # one example per entity: a key served many times is shown once
            for j in worst[np.argsort(-score[worst], kind="stable")]:
                k = kept[j]
                entity = orjson.dumps([parsed.entities[rows[k]].get(key) for key in t.join_keys])
                if entity in seen or len(seen) >= max_examples:
                    continue
                seen.add(entity)
                candidates.append(
                    _example(
                        t,
                        f,
                        Outcome(int(o)),
                        parsed,
                        int(rows[k]),
                        served[k],
                        off_t[k],
                        int(event[k]),
                        pii_keys,
                    )
                )
    report = ViewReport(
        view=t.name,
        entities=len(rows),
        with_data=int(np.count_nonzero(with_data)),
        ttl_s=t.ttl.total_seconds() if t.ttl else None,
        allowed_lag_s=t.allowed_lag.total_seconds(),
        delta_version=versions.get(t.view.batch_source.name),
        features=stats,
    )
    report.examples = candidates
    return report


_DETAIL = {
    Outcome.MISSING_ONLINE: "offline had a live value at the served time; the server served none",
    Outcome.MISSING_OFFLINE: "the server served a value; offline has none at the served time",
    Outcome.ONLINE_STALE: "the server served an older event than offline holds at the served time",
    Outcome.ONLINE_AHEAD: "served event younger than the allowed lag: offline may not have it yet",
    Outcome.ONLINE_FUTURE: "served event time later than the served time",
    Outcome.TTL_EXPIRED: "served a value older than the view's ttl at the served time",
    Outcome.VALUE_MISMATCH: "served value differs from the offline point-in-time value at the served time",
    Outcome.TYPE_MISMATCH: "served value's type is not the feature's",
}


def _example(
    t: Target,
    feature: str,
    outcome: Outcome,
    parsed: _Parsed,
    i: int,
    served,
    offline,
    event_us: int,
    pii_keys,
) -> Example:
    from fs_platform.governance.pii import mask

    sensitive = feature in t.sensitive
    entity = {
        k: mask(v) if k in t.masked_keys else v for k, v in parsed.entities[i].items() if k in t.join_keys
    }
    return Example(
        view=t.name,
        feature=feature,
        outcome=outcome.label,
        entity=entity,
        online_value=MASK if sensitive and served is not None else served,
        offline_value=MASK if sensitive and offline is not None else offline,
        online_ts=from_epoch_micros(event_us) if event_us else None,
        offline_ts=None,
        detail=f"{_DETAIL[outcome]} (request {parsed.request_id[i]}, served "
        f"{from_epoch_micros(int(parsed.served_us[i])).strftime('%Y-%m-%d %H:%M:%S')})",
    )


def _pair(
    targets: list[Target], parsed: _Parsed, groups: dict[str, np.ndarray], tol: Tolerances
) -> PairStats:
    """Rows of the two groups served for the same (request id, entity row): their served values compared."""
    (a, rows_a), (b, rows_b) = groups.items()
    index = {(parsed.request_id[i], parsed.row[i]): i for i in rows_b}
    pairs = [(i, index[key]) for i in rows_a if (key := (parsed.request_id[i], parsed.row[i])) in index]
    stats = []
    for t in targets:
        for f, vt in zip(t.features, t.types, strict=True):
            s = FeatureStats(f"{t.name}.{f}", vt.name, f in t.sensitive)
            if f not in t.sensitive and pairs:
                va = [parsed.features[i].get(parsed.name(i, t, f)) for i, _ in pairs]
                vb = [parsed.features[j].get(parsed.name(j, t, f)) for _, j in pairs]
                codes, _ = compare_column(vt, va, vb, np.arange(len(pairs)), tol.for_feature(t.name, f))
                s.compared = len(pairs)
                s.counts[Outcome.VALUE_MISMATCH.label] = int(np.count_nonzero(codes != Outcome.MATCHED))
            stats.append(s)
    return PairStats(a, b, len(pairs), stats)
