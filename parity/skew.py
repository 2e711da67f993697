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
      not in the offline table, younger than the allowed lag   -> online_ahead (tolerated: offline lagging)
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

The parts: ``skew_log`` reads and decodes the log, ``skew_offline`` retrieves the offline side,
``skew_views`` classifies each view's rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from fs_platform.errors import InvalidArgument
from fs_platform.parity.classify import Outcome
from fs_platform.parity.compare import Tolerances, compare_column
from fs_platform.parity.report import FeatureStats, ParityReport, Timings
from fs_platform.parity.skew_log import Parsed, log_location, read_log, sample_rows
from fs_platform.parity.skew_offline import offline_events, offline_values
from fs_platform.parity.skew_views import view_report
from fs_platform.parity.targets import Target, resolve
from fs_platform.timeutil import epoch_micros, utcnow

log = logging.getLogger(__name__)
BY = {
    "model_version": ("model_version",),
    "model_name": ("model_name",),
    "model": ("model_name", "model_version"),
}
UNKNOWN = "(none)"


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
    rows = sample_rows(logged, max_rows, seed)
    t_read = time.perf_counter() - started
    groups_of = _groups(rows, by)
    _, pii_keys = _sensitive(store)
    for t in targets:
        for f in sorted(set(t.features) & t.sensitive):
            skipped[f"{t.name}.{f}"] = "PII-classified: logged hashed or not at all, not comparable"
    parsed = Parsed.of(rows)
    t0 = time.perf_counter()
    offline, versions = offline_values(store, targets, parsed, pii_keys)
    held = offline_events(store, targets, parsed, pii_keys)
    t_offline = time.perf_counter() - t0
    now_us = epoch_micros(utcnow())
    tol = tolerances or Tolerances()
    reports: dict[str, ParityReport] = {}
    for name, members in groups_of.items():
        t1 = time.perf_counter()
        views = [
            view_report(
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
    from fs_platform.plugins.serving.served_rows import sensitive_names

    return sensitive_names(store)


def _pair(targets: list[Target], parsed: Parsed, groups: dict[str, np.ndarray], tol: Tolerances) -> PairStats:
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
