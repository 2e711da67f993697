"""``drift`` (a deep check of ``fs doctor``): each tier-1 view's last day of offline rows against the week
before it, with the governance drift test (``fs_platform.governance.drift``: PSI and KS per feature, the
view's own thresholds). The windows end at the view's newest event, not at now: a view that stopped
receiving data is the freshness check's finding, not drift.

Aggregation views are left out (their values are computed from raw events at retrieval, not stored), as
are windows too small for the test to mean anything. A drifted view is a warning with no action: whether
the world or the pipeline changed is for a person to decide (``fs monitor drift ... --html`` shows the
histograms). Evidence holds feature names and scores only.
"""

from __future__ import annotations

from datetime import timedelta

from fs_platform.doctor.model import Finding, Severity, error_finding

CURRENT = timedelta(days=1)
REFERENCE = timedelta(days=7)
MIN_ROWS = 100
"""Fewer rows than this in the current window: no verdict (PSI over 10 bins is noise on a handful of rows)."""


def check_drift(c) -> list[Finding]:
    from fs_platform.aggregation.spec import is_aggregation
    from fs_platform.errors import OfflineStoreError
    from fs_platform.governance.drift import detect_drift
    from fs_platform.governance.offline import newest_event_time, read_window

    views = [
        v for v in c.store.list_feature_views() if (v.tags or {}).get("tier") == "1" and c.wanted(v.name)
    ]
    if not views:
        return [Finding("drift", Severity.OK, "drift", "no tier-1 views to check")]
    findings = []
    for view in views:
        if is_aggregation(view):
            continue
        try:
            newest = newest_event_time(c.store, view.name)
            if newest is None:
                findings.append(
                    Finding("drift", Severity.INFO, view.name, "no offline rows: drift not checked")
                )
                continue
            end = newest + timedelta(microseconds=1)  # windows are half-open: the newest row is current
            current, reference = (end - CURRENT, end), (end - CURRENT - REFERENCE, end - CURRENT)
            current_rows = read_window(c.store, view.name, *current)
            rows = current_rows.num_rows
            if rows < MIN_ROWS:
                findings.append(
                    Finding(
                        "drift",
                        Severity.INFO,
                        view.name,
                        f"{rows} rows in the last day (< {MIN_ROWS}): too few for a drift test",
                        {"current_rows": rows},
                    )
                )
                continue
            report = detect_drift(c.store, view.name, reference, current, current_rows=current_rows)
        except OfflineStoreError as e:  # e.g. no rows in the reference week: a young view
            findings.append(Finding("drift", Severity.INFO, view.name, f"drift not checked: {e}"))
            continue
        except Exception as e:
            findings.append(error_finding("drift", view.name, e))
            continue
        evidence = {
            "current": [current[0].isoformat(timespec="seconds"), current[1].isoformat(timespec="seconds")],
            "reference": [
                reference[0].isoformat(timespec="seconds"),
                reference[1].isoformat(timespec="seconds"),
            ],
            "drifted": report.drifted,
            "psi": {f.feature: round(f.psi, 4) for f in report.features},
        }
        if report.drifted:
            window = f"{reference[0]:%Y-%m-%dT%H:%M}..{reference[1]:%Y-%m-%dT%H:%M}"
            now = f"{current[0]:%Y-%m-%dT%H:%M}..{current[1]:%Y-%m-%dT%H:%M}"
            message = (
                f"{len(report.drifted)} feature(s) drifted in the last day vs the week before: "
                f"{', '.join(report.drifted)} (`fs monitor drift {view.name} --reference {window} "
                f"--current {now} --html drift.html` shows the histograms)"
            )
            findings.append(Finding("drift", Severity.WARNING, view.name, message, evidence))
        else:
            findings.append(
                Finding("drift", Severity.OK, view.name, "no feature drifted in the last day", evidence)
            )
    return findings
