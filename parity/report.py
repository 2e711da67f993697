"""``ParityReport``: the typed result of a parity check, its JSON form, table rows and Prometheus metrics.

Rates are per (view, feature) over compared (entity, feature) pairs. A view breaches when its
share of non-tolerated mismatches exceeds ``max_mismatch_rate``; the report breaches when any view
does. Values of PII-classified features never enter a report: they are replaced by ``MASK``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fs_platform.parity.classify import MISMATCH_CLASSES

MASK = "<masked>"
CLASSES = tuple(o.label for o in MISMATCH_CLASSES)


@dataclass(frozen=True)
class Example:
    """One mismatching (entity, feature) with both sides; values masked for sensitive features."""

    view: str
    feature: str
    outcome: str
    entity: dict[str, Any]
    online_value: Any
    offline_value: Any
    online_ts: datetime | None
    offline_ts: datetime | None
    detail: str


@dataclass
class FeatureStats:
    feature: str
    dtype: str
    sensitive: bool
    compared: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    tolerated: int = 0  # mismatches explained by lag or by both sides being past ttl

    @property
    def mismatched(self) -> int:
        return sum(self.counts.values())

    @property
    def matched(self) -> int:
        return self.compared - self.mismatched

    @property
    def breaching(self) -> int:
        return self.mismatched - self.tolerated

    def rate(self, outcome: str) -> float:
        return self.counts[outcome] / self.compared if self.compared else 0.0

    @property
    def breach_rate(self) -> float:
        return self.breaching / self.compared if self.compared else 0.0


@dataclass
class ViewReport:
    view: str
    entities: int
    with_data: int  # sampled entities with a row online or offline: 0 means nothing was really checked
    ttl_s: float | None
    allowed_lag_s: float
    delta_version: int | None
    features: list[FeatureStats]
    examples: list[Example] = field(default_factory=list)
    breach: bool = False

    def total(self) -> FeatureStats:
        out = FeatureStats("*", "", any(f.sensitive for f in self.features))
        for f in self.features:
            out.compared += f.compared
            out.tolerated += f.tolerated
            for k, v in f.counts.items():
                out.counts[k] += v
        return out


@dataclass(frozen=True)
class Timings:
    """Seconds spent per phase; ``online_read_s`` vs ``offline_s`` is the split the benchmark reports."""

    sampling_s: float
    online_read_s: float
    offline_s: float
    compare_s: float
    total_s: float


@dataclass
class ParityReport:
    as_of: datetime
    seed: int
    sample: int | None
    max_mismatch_rate: float
    views: list[ViewReport]
    timings: Timings
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it was not checked

    @property
    def breach(self) -> bool:
        return any(v.breach for v in self.views)

    @property
    def no_data(self) -> list[str]:
        """Views where no sampled entity had a row on either side (an empty view, a stalled source,
        keys that match nothing): their "no mismatch" proves nothing."""
        return [v.view for v in self.views if v.with_data == 0]

    @property
    def verdict(self) -> str:
        return "breach" if self.breach else "no_data" if self.no_data else "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps as ISO 8601 strings)."""

        def ts(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        def stats(s: FeatureStats) -> dict[str, Any]:
            return {
                "feature": s.feature,
                "dtype": s.dtype,
                "sensitive": s.sensitive,
                "compared": s.compared,
                "matched": s.matched,
                "mismatched": s.mismatched,
                "tolerated": s.tolerated,
                "breaching": s.breaching,
                "breach_rate": s.breach_rate,
                "counts": dict(s.counts),
                "rates": {k: s.rate(k) for k in CLASSES},
            }

        return {
            "verdict": self.verdict,
            "as_of": ts(self.as_of),
            "seed": self.seed,
            "sample": self.sample,
            "max_mismatch_rate": self.max_mismatch_rate,
            "views": [
                {
                    "view": v.view,
                    "entities": v.entities,
                    "with_data": v.with_data,
                    "ttl_s": v.ttl_s,
                    "allowed_lag_s": v.allowed_lag_s,
                    "delta_version": v.delta_version,
                    "breach": v.breach,
                    "total": stats(v.total()),
                    "features": [stats(f) for f in v.features],
                    "examples": [
                        {
                            "view": e.view,
                            "feature": e.feature,
                            "outcome": e.outcome,
                            "entity": e.entity,
                            "online_value": e.online_value,
                            "offline_value": e.offline_value,
                            "online_ts": ts(e.online_ts),
                            "offline_ts": ts(e.offline_ts),
                            "detail": e.detail,
                        }
                        for e in v.examples
                    ],
                }
                for v in self.views
            ],
            "skipped": dict(self.skipped),
            "timings": vars(self.timings),
        }

    # -- rows and lines for humans (the CLI renders them) ---------------------------------------
    SUMMARY_COLUMNS = ("view", "feature", "compared", "matched", "mismatches by class", "breach rate")

    def summary_rows(self) -> list[list[Any]]:
        rows = []
        for v in self.views:
            for s in [*v.features, v.total()]:
                classes = " ".join(f"{k}={n}" for k, n in s.counts.items() if n) or "-"
                flag = " BREACH" if s.feature == "*" and v.breach else ""
                rows.append([v.view, s.feature, s.compared, s.matched, classes, f"{s.breach_rate:.2%}{flag}"])
        return rows

    def example_lines(self) -> list[str]:
        """One line per example: class, where, both sides with their event times, why."""

        def side(value: Any, ts: datetime | None) -> str:
            shown = "null" if value is None else repr(value) if isinstance(value, float) else str(value)
            return f"{shown} @ {ts.strftime('%Y-%m-%d %H:%M:%S')}" if ts else shown

        return [
            f"{e.outcome}  {e.view}.{e.feature}  {','.join(f'{k}={v}' for k, v in e.entity.items())}  "
            f"online={side(e.online_value, e.online_ts)}  "
            f"offline={side(e.offline_value, e.offline_ts)}  ({e.detail})"
            for v in self.views
            for e in v.examples
        ]


def write_prometheus(report: ParityReport, path: str) -> None:
    """Write the report's rates as a node-exporter textfile (a registry per run: no stale series)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    compared = Gauge(
        "fs_parity_compared",
        "Entity-feature pairs compared by the last parity check.",
        ["view", "feature"],
        registry=registry,
    )
    rate = Gauge(
        "fs_parity_mismatch_rate",
        "Share of compared pairs in each mismatch class.",
        ["view", "feature", "class"],
        registry=registry,
    )
    breach_rate = Gauge(
        "fs_parity_breach_rate",
        "Share of compared pairs with a non-tolerated mismatch.",
        ["view", "feature"],
        registry=registry,
    )
    breach = Gauge(
        "fs_parity_breach", "1 if the view breached the mismatch threshold.", ["view"], registry=registry
    )
    last = Gauge(
        "fs_parity_last_run_timestamp_seconds",
        "When the last parity check read the stores.",
        registry=registry,
    )
    for v in report.views:
        for s in [*v.features, v.total()]:
            compared.labels(v.view, s.feature).set(s.compared)
            breach_rate.labels(v.view, s.feature).set(s.breach_rate)
            for k in CLASSES:
                rate.labels(v.view, s.feature, k).set(s.rate(k))
        breach.labels(v.view).set(1 if v.breach else 0)
    last.set(report.as_of.timestamp())
    write_to_textfile(path, registry)
