"""The ``parity`` dashboard (offline-online parity checks)."""

from __future__ import annotations

from fs_platform.monitoring.panels import Dashboard, Panel, Row, q

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
