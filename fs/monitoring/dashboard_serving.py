"""The ``serving`` dashboard (fs serve and the instrumented feast server)."""

from __future__ import annotations

from fs_platform.monitoring.panels import RATE, Dashboard, Panel, Row, p99, q

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
                    description="The request's first bytes to its response being ready to write; the "
                    "alert fires on p99 over 5 ms.",
                ),
                Panel(
                    "p99 by feature service",
                    (q(p99("fs_serve_request_seconds", "feature_service"), "{{feature_service}}"),),
                    unit="s",
                ),
                Panel("Redis read p99", (q(p99("fs_serve_redis_seconds"), "p99"),), unit="s"),
                Panel(
                    "Redis reads answered directly (share)",
                    (
                        q(
                            f"sum(rate(fs_serve_direct_reads_total[{RATE}])) / "
                            f"sum(rate(fs_serve_redis_seconds_count[{RATE}]))",
                            "direct",
                        ),
                    ),
                    unit="percentunit",
                    description="Reads made in the loop callback because the worker had nothing else to "
                    "do (low concurrency); the rest share the pipelined connection. See docs/serving.md.",
                ),
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
                    "Refused by the HTTP layer per second",
                    (q(f"sum by (status) (rate(fs_serve_rejected_total[{RATE}]))", "{{status}}"),),
                    width=6,
                    unit="reqps",
                    description="400 malformed or upgrade, 408 not received within the deadline, 413 body "
                    "too large, 431 headers too large; each closes its connection.",
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
                    description="queue_full: the worker's queue was full; write_failed: the Delta append "
                    "failed.",
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
