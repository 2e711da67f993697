"""The ``freshness`` dashboard (each view's freshness against its SLA)."""

from __future__ import annotations

from fs_platform.monitoring.panels import Dashboard, Panel, Row, q

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
