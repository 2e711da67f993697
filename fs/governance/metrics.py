"""Platform metrics on ``fs_platform.observability.REGISTRY``: serving, materialization/backfill jobs,
freshness, data quality and drift. (Ingest keeps its own in ``plugins/kafka_ingest/metrics.py`` on
the same registry; parity exports per run.) ``docs/observability.md`` lists every metric and span.

Label values come from small fixed sets (view and feature *names*, fixed status words) — never
entity keys or feature values. Backfill/materialization: import ``JOB_DURATION`` and ``JOB_ROWS``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from fs_platform.observability import REGISTRY

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)

# -- serving ----------------------------------------------------------------------------------
SERVING_LATENCY = Histogram(
    "fs_serving_request_seconds",
    "Feature server request latency.",
    ["endpoint", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PII_READS_DENIED = Counter(
    "fs_pii_reads_denied_total",
    "Online reads refused by a permission check (path: sdk or server).",
    ["path"],
    registry=REGISTRY,
)

# -- materialization and backfill ---------------------------------------------------------------
JOB_DURATION = Histogram(
    "fs_job_duration_seconds",
    "Duration of one materialization or backfill chunk.",
    ["kind", "view"],
    buckets=_JOB_BUCKETS,
    registry=REGISTRY,
)
JOB_ROWS = Counter(
    "fs_job_rows_total",
    "Rows handled by materialization/backfill (written, skipped_stale, rejected).",
    ["kind", "view", "outcome"],
    registry=REGISTRY,
)

# -- freshness --------------------------------------------------------------------------------
FRESHNESS_AGE = Gauge(
    "fs_freshness_age_seconds",
    "Age of the newest data of a view.",
    ["view", "store"],
    registry=REGISTRY,
)
FRESHNESS_SLA = Gauge("fs_freshness_sla_seconds", "A view's freshness SLA.", ["view"], registry=REGISTRY)
FRESHNESS_BREACH = Gauge(
    "fs_freshness_breach",
    "1 if the view's newest data is older than its SLA.",
    ["view", "store"],
    registry=REGISTRY,
)

# -- data quality -----------------------------------------------------------------------------
VALIDATION_RUNS = Counter(
    "fs_validation_runs_total",
    "Validation runs by outcome (passed, warned, rejected).",
    ["view", "origin", "outcome"],
    registry=REGISTRY,
)
VALIDATION_FAILED_CHECKS = Counter(
    "fs_validation_failed_checks_total",
    "Failed expectations.",
    ["view", "origin"],
    registry=REGISTRY,
)
DRIFT_SCORE = Gauge(
    "fs_drift_score",
    "Last drift score of a feature (metric: psi or ks).",
    ["view", "feature", "metric"],
    registry=REGISTRY,
)

# -- OpenTelemetry span (with fs.observability.span) ------------------------------------------
SPAN_VALIDATE = "fs.validate"
