"""How a dashboard is described: rows of panels; a panel is a title, a kind (time series, stat, table)
and PromQL queries over the metrics in ``docs/observability.md``. ``$__rate_interval`` (``RATE``) is
Grafana's rate window; tests substitute it to check every expression with ``promtool``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | stat | table
    unit: str = "short"
    description: str = ""
    width: int = 12
    thresholds: tuple[float, ...] = ()  # red from the first, for stat panels


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...] = field(default_factory=tuple)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def p99(metric: str, by: str = "", where: str = "", quantile: float = 0.99) -> str:
    """``histogram_quantile`` of a histogram's rate, grouped by ``by`` (comma-separated labels)."""
    group = ", ".join([*(b.strip() for b in by.split(",") if b.strip()), "le"])
    return f"histogram_quantile({quantile}, sum by ({group}) (rate({metric}_bucket{where}[{RATE}])))"
