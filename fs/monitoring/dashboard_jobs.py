"""The ``jobs`` dashboard (materialization and backfill chunks, fs ops audit events)."""

from __future__ import annotations

from fs_platform.monitoring.panels import RATE, Dashboard, Panel, Row, p99, q

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
