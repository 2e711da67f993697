"""``check``: sample entity keys, read them online, compute offline what online should hold, compare.

    from fs_platform import Platform
    from fs_platform.parity import check
    report = check(Platform("feature_repo").store, views=["customer_txn_aggregates"], sample=1000, seed=7)
    report.verdict            # "ok" | "breach"

Everything is evaluated at one instant ``as_of`` (default: now): the sample window, the offline
cut-off and the ttl applied to online rows. See ``fs_platform.parity.classify`` for the classes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import ParityError
from fs_platform.observability import span
from fs_platform.parity.check_examples import worst_examples
from fs_platform.parity.classify import (
    ABSENT,
    COMPARE,
    COMPARE_STALE,
    Outcome,
    RowSides,
    classify_rows,
)
from fs_platform.parity.compare import Tolerances, compare_column
from fs_platform.parity.expected import CREATED_TS, EVENT_TS, expected_aggregates, expected_rows
from fs_platform.parity.online import OnlineRows, read_online
from fs_platform.parity.report import FeatureStats, ParityReport, Timings, ViewReport
from fs_platform.parity.sampling import default_lookback, keys_for_view, read_entities, sample_keys
from fs_platform.parity.spark_io import SparkIO, ViewSource, view_source
from fs_platform.parity.targets import Target, resolve
from fs_platform.plugins.delta.engine import get_engine
from fs_platform.timeutil import (
    arrow_epoch_micros,
    duration_micros,
    epoch_micros,
    parse_time,
    utcnow,
)

log = logging.getLogger(__name__)
FUTURE_SKEW_US = 60_000_000  # clock skew allowed between producers and this machine


@dataclass
class Aligned:
    """One view's sample with both sides lined up by key position."""

    keys: pa.Table
    online: OnlineRows
    offline_present: np.ndarray
    offline_us: np.ndarray
    offline_values: dict[str, list]
    offline_created_us: np.ndarray  # INT64_MIN where the offline row has no created time
    read_us: int = 0  # when online was read (its ttl expiry and the allowed lag are measured here)


def check(
    store,
    *,
    views: list[str] | None = None,
    feature_service: str | None = None,
    sample: int = 1000,
    entities: str | Path | pa.Table | None = None,
    seed: int = 0,
    as_of: str | datetime | None = None,
    tolerances: Tolerances | None = None,
    max_mismatch_rate: float = 0.0,
    allowed_lag: timedelta | None = None,
    lookback: timedelta | None = None,
    examples: int = 5,
) -> ParityReport:
    """Check online against offline for the given views (default: every online view).

    ``entities`` (a file path or an Arrow table with join-key columns) replaces sampling.
    ``allowed_lag`` (default: each view's ``freshness_sla`` tag) is how far the offline copy of a
    stream write may trail the online one. ``lookback`` (default: the view's ttl) bounds which keys
    are sampled. ``max_mismatch_rate`` is the share of non-tolerated mismatches a view may have.
    """
    if sample < 1:
        raise ParityError(f"sample must be at least 1, got {sample}")
    if not 0.0 <= max_mismatch_rate <= 1.0:
        raise ParityError(f"max_mismatch_rate must be within [0, 1], got {max_mismatch_rate}")
    started = time.perf_counter()
    as_of_dt = parse_time(as_of, what="as_of") if as_of is not None else utcnow()
    tolerances = tolerances or Tolerances()
    targets, skipped = resolve(store, views, feature_service, allowed_lag)
    entity_table = read_entities(entities) if isinstance(entities, str | Path) else entities
    io = SparkIO(get_engine(store.config), store.config)
    clock = {"sampling": 0.0, "online": 0.0, "offline": 0.0, "compare": 0.0}
    reports = []
    with span("parity.check", views=",".join(t.name for t in targets)):
        for target in targets:
            t0 = time.perf_counter()
            src = view_source(target, store.config)
            if entity_table is None:
                keys = sample_keys(io, src, as_of_dt, sample, seed, lookback or default_lookback(src))
            else:
                keys = keys_for_view(entity_table, src)
            t1 = time.perf_counter()
            online = read_online(store, target, keys, as_of_dt)
            read_us = epoch_micros(utcnow())  # after the read: a key gone by its end had expired
            t2 = time.perf_counter()
            aggregated = is_aggregation(target.view)
            expected = (expected_aggregates if aggregated else expected_rows)(io, src, keys, as_of_dt)
            t3 = time.perf_counter()
            aligned = _align(keys, online, expected, target)
            aligned.read_us = read_us
            report = _compare_view(src, aligned, as_of_dt, tolerances, examples)
            report.breach = report.total().breach_rate > max_mismatch_rate
            reports.append(report)
            t4 = time.perf_counter()
            for phase, dt in zip(clock, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                clock[phase] += dt
            log.info(
                "parity %s: %d entities, %d breaching", target.name, keys.num_rows, report.total().breaching
            )
    timings = Timings(
        clock["sampling"], clock["online"], clock["offline"], clock["compare"], time.perf_counter() - started
    )
    return ParityReport(
        as_of_dt,
        seed,
        None if entity_table is not None else sample,
        max_mismatch_rate,
        reports,
        timings,
        skipped,
    )


def _align(keys: pa.Table, online: OnlineRows, expected: pa.Table, target: Target) -> Aligned:
    """Position of each sampled key's offline row (keys without one get ``offline_present=False``)."""
    n = keys.num_rows
    if len(target.join_keys) == 1:
        k = target.join_keys[0]
        pos = pc.index_in(keys[k], value_set=expected[k]).to_numpy(zero_copy_only=False)
    else:
        index = {
            row: i
            for i, row in enumerate(zip(*[expected[k].to_pylist() for k in target.join_keys], strict=True))
        }
        rows = zip(*[keys[k].to_pylist() for k in target.join_keys], strict=True)
        pos = np.array([index.get(row, np.nan) for row in rows], dtype=float)
    present = ~np.isnan(pos) if pos.dtype.kind == "f" else np.ones(n, dtype=bool)
    take = np.where(present, np.nan_to_num(pos), 0).astype(np.int64)
    event_us = (
        arrow_epoch_micros(expected[EVENT_TS]).to_numpy(zero_copy_only=False)
        if expected.num_rows
        else np.zeros(0, np.int64)
    )
    offline_us = np.where(present, event_us[take] if expected.num_rows else 0, 0).astype(np.int64)
    rows = pa.array(take, mask=~present)  # a null index takes a null: keys without an offline row
    offline_values = {f: expected[f].take(rows).to_pylist() for f in target.features}
    created = arrow_epoch_micros(expected[CREATED_TS].take(rows)).fill_null(_NO_CREATED)
    return Aligned(keys, online, present, offline_us, offline_values, created.to_numpy(zero_copy_only=False))


_NO_CREATED = np.iinfo(np.int64).min  # a null created time loses every tie


def _compare_view(
    src: ViewSource, a: Aligned, as_of: datetime, tolerances: Tolerances, max_examples: int
) -> ViewReport:
    target = src.target
    ttl_us = duration_micros(target.ttl) if target.ttl else None
    lag_us = duration_micros(target.allowed_lag)
    as_of_us = epoch_micros(as_of)
    sides = RowSides(
        a.online.state,
        a.online.event_us,
        a.offline_present,
        a.offline_us,
        a.online.created_us,
        a.offline_created_us,
    )
    # Online is read live: an event later than the read (plus clock skew) comes from the future.
    read_us = a.read_us or epoch_micros(utcnow())
    future_us = max(as_of_us, read_us) + FUTURE_SKEW_US
    row_class, tolerated = classify_rows(sides, as_of_us, ttl_us, lag_us, future_us, read_us)
    compared = (row_class == COMPARE) | (row_class == COMPARE_STALE)
    compare_rows = np.flatnonzero(compared)
    # Same event, offline created later: a different value is a correction not materialized yet (a
    # wrong type stays a type mismatch: a writer bug, whatever the times).
    stale_rows = row_class[compare_rows] == COMPARE_STALE
    stats, candidates = [], []
    for feature, vt in zip(target.features, target.types, strict=True):
        outcome = row_class.copy()
        score = np.zeros(len(outcome))
        if len(compare_rows):
            codes, scores = compare_column(
                vt,
                a.online.values[feature],
                a.offline_values[feature],
                compare_rows,
                tolerances.for_feature(target.name, feature),
            )
            outcome[compare_rows] = np.where(
                stale_rows & (codes == Outcome.VALUE_MISMATCH), Outcome.ONLINE_STALE, codes
            )
            score[compare_rows] = scores
        # Row-level classes rank by the timestamp gap: the most out-of-date rows first.
        gap = np.abs(a.online.event_us - a.offline_us).astype(float)
        score = np.where(compared, score, gap)
        s = FeatureStats(feature, vt.name, feature in target.sensitive, compared=len(outcome))
        for o in Outcome:
            if o is not Outcome.MATCHED:
                s.counts[o.label] = int(np.count_nonzero(outcome == o))
        s.tolerated = int(np.count_nonzero(tolerated & (outcome != Outcome.MATCHED)))
        stats.append(s)
        for o in np.unique(outcome[outcome != Outcome.MATCHED]):
            rows = np.flatnonzero(outcome == o)
            worst = rows[np.argsort(-score[rows], kind="stable")[:max_examples]]
            candidates.extend((int(o), -float(score[i]), int(i), feature) for i in worst)
    report = ViewReport(
        view=target.name,
        entities=a.keys.num_rows,
        with_data=int(np.count_nonzero((a.online.state != ABSENT) | a.offline_present)),
        ttl_s=target.ttl.total_seconds() if target.ttl else None,
        allowed_lag_s=target.allowed_lag.total_seconds(),
        delta_version=src.version,
        features=stats,
    )
    report.examples = worst_examples(target, a, candidates, as_of_us, ttl_us, lag_us, max_examples, read_us)
    return report
