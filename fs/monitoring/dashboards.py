"""The Grafana dashboards, described once here and rendered to Grafana's JSON model.

A dashboard is rows of panels; a panel is a title, a kind (time series, stat, table) and PromQL
queries over the metrics in ``docs/observability.md``. Each dashboard has a ``datasource`` variable
(any Prometheus data source), so the same JSON imports anywhere. ``$__rate_interval`` is Grafana's
rate window; tests substitute it to check every expression with ``promtool``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RATE = "$__rate_interval"
_DS = {"type": "prometheus", "uid": "${datasource}"}
_WIDTH = 24


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


SERVING = Dashboard(
    "fs-serving",
    "fs / Serving",
    "fs serve (/get-online-features) and Feast's server when wrapped by instrument_feature_server.",
    (
        Row(
            "fs serve",
            (
                Panel(
                    "Requests per second by status",
                    (q(f"sum by (status) (rate(fs_serve_request_seconds_count[{RATE}]))", "{{status}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Latency p50 / p99 / p99.9",
                    (
                        q(p99("fs_serve_request_seconds", quantile=0.5), "p50"),
                        q(p99("fs_serve_request_seconds"), "p99"),
                        q(p99("fs_serve_request_seconds", quantile=0.999), "p99.9"),
                    ),
                    unit="s",
                    description="Receipt to the last byte handed to the server; the alert fires on p99 over 5 ms.",
                ),
                Panel(
                    "p99 by feature service",
                    (q(p99("fs_serve_request_seconds", "feature_service"), "{{feature_service}}"),),
                    unit="s",
                ),
                Panel("Redis read p99", (q(p99("fs_serve_redis_seconds"), "p99"),), unit="s"),
                Panel(
                    "Entities per request (p50, p99)",
                    (
                        q(p99("fs_serve_entities_per_request", quantile=0.5), "p50"),
                        q(p99("fs_serve_entities_per_request"), "p99"),
                    ),
                ),
                Panel(
                    "Views answered INVALID per second",
                    (
                        q(
                            f"sum by (view, reason) (rate(fs_serve_view_failures_total[{RATE}]))",
                            "{{view}} {{reason}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Redis breaker open",
                    (q("max(fs_serve_breaker_open)", "open"),),
                    kind="stat",
                    width=6,
                    thresholds=(1,),
                ),
                Panel(
                    "Shed (503) per second",
                    (q(f"sum(rate(fs_serve_shed_total[{RATE}]))", "shed"),),
                    width=6,
                    unit="reqps",
                ),
                Panel(
                    "Registry refreshes (1h)",
                    (q("sum(increase(fs_serve_registry_refreshes_total[1h]))", "refreshes"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "PII reads denied per second",
                    (q(f"sum by (path) (rate(fs_pii_reads_denied_total[{RATE}]))", "{{path}}"),),
                    width=6,
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Served-feature log",
            (
                Panel(
                    "Rows logged per second",
                    (q(f"sum(rate(fs_served_log_rows_total[{RATE}]))", "rows"),),
                    unit="ops",
                ),
                Panel(
                    "Sampled requests not logged per second",
                    (q(f"sum by (reason) (rate(fs_served_log_dropped_total[{RATE}]))", "{{reason}}"),),
                    unit="ops",
                    description="queue_full: the worker's queue was full; write_failed: the Delta append failed.",
                ),
            ),
        ),
        Row(
            "feast serve (instrumented)",
            (
                Panel(
                    "Requests per second by endpoint and status",
                    (
                        q(
                            f"sum by (endpoint, status) (rate(fs_serving_request_seconds_count[{RATE}]))",
                            "{{endpoint}} {{status}}",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "p99 by endpoint",
                    (q(p99("fs_serving_request_seconds", "endpoint"), "{{endpoint}}"),),
                    unit="s",
                ),
            ),
        ),
    ),
)

INGEST = Dashboard(
    "fs-ingest",
    "fs / Ingest",
    "The Kafka ingestor (fs ingest run): throughput, consumer lag, freshness, breakers, dead letters.",
    (
        Row(
            "Throughput",
            (
                Panel(
                    "Records consumed per second",
                    (q(f"sum by (topic) (rate(fs_ingest_consumed_records_total[{RATE}]))", "{{topic}}"),),
                    unit="ops",
                ),
                Panel(
                    "Rows written per second",
                    (
                        q(
                            f"sum by (topic, target) (rate(fs_ingest_written_rows_total[{RATE}]))",
                            "{{topic}} {{target}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Rows skipped per second",
                    (
                        q(
                            f"sum by (topic) (rate(fs_ingest_skipped_stale_rows_total[{RATE}]))",
                            "stale {{topic}}",
                        ),
                        q(
                            f"sum by (topic) (rate(fs_ingest_skipped_duplicate_rows_total[{RATE}]))",
                            "duplicate {{topic}}",
                        ),
                    ),
                    unit="ops",
                    description="Stale: a newer event is stored online. Duplicate: offsets already in Delta.",
                ),
                Panel(
                    "Batch write p99 by target",
                    (q(p99("fs_ingest_batch_seconds", "target"), "{{target}}"),),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Lag and freshness",
            (
                Panel(
                    "Consumer lag by topic",
                    (q("sum by (topic) (fs_ingest_consumer_lag)", "{{topic}}"),),
                    description="High watermark minus position, summed over the assigned partitions.",
                ),
                Panel(
                    "Consumer lag by partition",
                    (q("max by (topic, partition) (fs_ingest_consumer_lag)", "{{topic}}[{{partition}}]"),),
                ),
                Panel(
                    "Freshness (online write time - event time) p50 / p99",
                    (
                        q(p99("fs_ingest_freshness_seconds", "topic", quantile=0.5), "p50 {{topic}}"),
                        q(p99("fs_ingest_freshness_seconds", "topic"), "p99 {{topic}}"),
                    ),
                    unit="s",
                    width=24,
                ),
            ),
        ),
        Row(
            "Failures",
            (
                Panel(
                    "Circuit breaker (0 closed, 1 half-open, 2 open)",
                    (q("max by (target) (fs_ingest_breaker_state)", "{{target}}"),),
                    kind="stat",
                    width=8,
                    thresholds=(1, 2),
                ),
                Panel(
                    "Write retries per second",
                    (q(f"sum by (target) (rate(fs_ingest_write_retries_total[{RATE}]))", "{{target}}"),),
                    width=8,
                    unit="ops",
                ),
                Panel(
                    "Parked records (1h)",
                    (q("sum by (topic) (increase(fs_ingest_parked_records_total[1h]))", "{{topic}}"),),
                    kind="stat",
                    width=8,
                    thresholds=(1,),
                    description="Bad records the dead-letter topic did not take: logged by offset, act now.",
                ),
                Panel(
                    "Dead letters per second by reason",
                    (
                        q(
                            f"sum by (topic, reason) (rate(fs_ingest_dead_lettered_records_total[{RATE}]))",
                            "{{topic}} {{reason}}",
                        ),
                    ),
                    unit="ops",
                    width=24,
                ),
            ),
        ),
    ),
)

JOBS = Dashboard(
    "fs-jobs",
    "fs / Materialization and backfill",
    "Chunks of fs materialize and fs backfill runs, and the fs doctor / fs ops audit events.",
    (
        Row(
            "Chunks",
            (
                Panel(
                    "Chunk duration p90 by kind",
                    (q(p99("fs_job_duration_seconds", "kind", quantile=0.9), "{{kind}}"),),
                    unit="s",
                ),
                Panel(
                    "Chunk duration p90 by view",
                    (q(p99("fs_job_duration_seconds", "kind, view", quantile=0.9), "{{kind}} {{view}}"),),
                    unit="s",
                ),
                Panel(
                    "Chunks completed (1h)",
                    (
                        q(
                            "sum by (kind, view) (increase(fs_job_duration_seconds_count[1h]))",
                            "{{kind}} {{view}}",
                        ),
                    ),
                    kind="table",
                ),
                Panel(
                    "Rows per second by outcome",
                    (q(f"sum by (kind, outcome) (rate(fs_job_rows_total[{RATE}]))", "{{kind}} {{outcome}}"),),
                    unit="ops",
                ),
                Panel(
                    "Rows rejected by validation (24h)",
                    (
                        q(
                            'sum by (kind, view) (increase(fs_job_rows_total{outcome="rejected"}[24h]))',
                            "{{kind}} {{view}}",
                        ),
                    ),
                    kind="table",
                ),
                Panel(
                    "Ops audit events (24h)",
                    (q("sum by (event, kind) (increase(fs_ops_events_total[24h]))", "{{event}} {{kind}}"),),
                    kind="table",
                ),
            ),
        ),
    ),
)

PARITY = Dashboard(
    "fs-parity",
    "fs / Parity",
    "Offline-online parity checks (fs parity check --prom-file, a textfile per run).",
    (
        Row(
            "Last check",
            (
                Panel(
                    "Views in breach",
                    (q("sum(fs_parity_breach)", "views"),),
                    kind="stat",
                    width=8,
                    thresholds=(1,),
                ),
                Panel(
                    "Since the last check",
                    (q("time() - max(fs_parity_last_run_timestamp_seconds)", "age"),),
                    kind="stat",
                    unit="s",
                    width=8,
                    thresholds=(7200,),
                ),
                Panel(
                    "Pairs compared",
                    (q('sum(fs_parity_compared{feature="*"})', "pairs"),),
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Breach rate by view",
                    (q('max by (view) (fs_parity_breach_rate{feature="*"})', "{{view}}"),),
                    unit="percentunit",
                ),
                Panel(
                    "Mismatch rate by class",
                    (q('max by (view, class) (fs_parity_mismatch_rate{feature="*"})', "{{view}} {{class}}"),),
                    unit="percentunit",
                ),
                Panel(
                    "Breach rate by feature",
                    (
                        q(
                            'max by (view, feature) (fs_parity_breach_rate{feature!="*"})',
                            "{{view}}.{{feature}}",
                        ),
                    ),
                    kind="table",
                    unit="percentunit",
                    width=24,
                ),
            ),
        ),
    ),
)

QUALITY = Dashboard(
    "fs-quality",
    "fs / Validation and drift",
    "Validation gate runs (fs validate, backfill, materialize, ingest, API) and drift scores (fs monitor drift).",
    (
        Row(
            "Validation",
            (
                Panel(
                    "Runs by outcome (1h)",
                    (
                        q(
                            "sum by (view, outcome) (increase(fs_validation_runs_total[1h]))",
                            "{{view}} {{outcome}}",
                        ),
                    ),
                ),
                Panel(
                    "Failed expectations by origin (1h)",
                    (
                        q(
                            "sum by (view, origin) (increase(fs_validation_failed_checks_total[1h]))",
                            "{{view}} {{origin}}",
                        ),
                    ),
                ),
            ),
        ),
        Row(
            "Drift",
            (
                Panel(
                    "PSI by feature",
                    (q('max by (view, feature) (fs_drift_score{metric="psi"})', "{{view}}.{{feature}}"),),
                    description="Above 0.25 is a large shift (the alert's threshold).",
                ),
                Panel(
                    "KS by feature",
                    (q('max by (view, feature) (fs_drift_score{metric="ks"})', "{{view}}.{{feature}}"),),
                ),
            ),
        ),
    ),
)

FRESHNESS = Dashboard(
    "fs-freshness",
    "fs / Freshness",
    "Age of each view's newest data against its freshness SLA (fs monitor freshness --prom-file).",
    (
        Row(
            "Freshness",
            (
                Panel(
                    "Views in breach",
                    (q("count(max by (view) (fs_freshness_breach) == 1) or vector(0)", "views"),),
                    kind="stat",
                    width=8,
                    thresholds=(1,),
                ),
                Panel(
                    "Age as a share of the SLA",
                    (
                        q(
                            "max by (view, store) (fs_freshness_age_seconds) / on (view) group_left "
                            "max by (view) (fs_freshness_sla_seconds)",
                            "{{view}} {{store}}",
                        ),
                    ),
                    unit="percentunit",
                    width=16,
                ),
                Panel(
                    "Age of the newest data",
                    (q("max by (view, store) (fs_freshness_age_seconds)", "{{view}} {{store}}"),),
                    unit="s",
                ),
                Panel(
                    "SLA",
                    (q("max by (view) (fs_freshness_sla_seconds)", "{{view}}"),),
                    kind="table",
                    unit="s",
                ),
            ),
        ),
    ),
)

DASHBOARDS = (SERVING, INGEST, JOBS, PARITY, QUALITY, FRESHNESS)


def expressions(dashboard: Dashboard) -> list[str]:
    return [query.expr for row in dashboard.rows for panel in row.panels for query in panel.queries]


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict:
    steps = [{"color": "green", "value": None}] + [
        {"color": "orange" if i < len(panel.thresholds) - 1 else "red", "value": v}
        for i, v in enumerate(panel.thresholds)
    ]
    model = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _DS,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": _DS,
                "expr": qu.expr,
                "legendFormat": qu.legend or "__auto",
                "instant": panel.kind == "table",
                "range": panel.kind != "table",
            }
            for i, qu in enumerate(panel.queries)
        ],
    }
    if panel.kind == "stat":
        model["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
        }
    return model


def render(dashboard: Dashboard) -> dict:
    """Grafana's dashboard JSON model (schema 39): rows as collapsible row panels, panels laid out
    left to right in a 24-column grid."""
    panels, pid, y = [], 1, 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": _WIDTH, "x": 0, "y": y},
            }
        )
        pid, y, x = pid + 1, y + 1, 0
        for panel in row.panels:
            if x + panel.width > _WIDTH:
                x, y = 0, y + 8
            panels.append(_panel(panel, pid, x, y))
            pid, x = pid + 1, x + panel.width
        y += 8
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["fs"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }
