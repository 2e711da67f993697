"""The ``quality`` dashboard (validation runs and drift scores)."""

from __future__ import annotations

from fs_platform.monitoring.panels import Dashboard, Panel, Row, q

QUALITY = Dashboard(
    "fs-quality",
    "fs / Validation and drift",
    "Validation gate runs (fs validate, backfill, materialize, ingest, API) and drift scores "
    "(fs monitor drift).",
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
