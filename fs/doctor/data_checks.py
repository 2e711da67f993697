"""Checks of the data served:

``freshness``   a view older than its SLA: proposes ``rematerialize`` when online is behind offline
``validation``  the latest recorded validation of a view failed: proposes ``rerun_validation``
``parity``      (deep) a sample of tier-1 views online vs offline: proposes ``rematerialize`` over the
                view's ttl
"""

from __future__ import annotations

from datetime import timedelta

from fs_platform.doctor.actions import new_action
from fs_platform.doctor.context import CheckContext, fmt_time
from fs_platform.doctor.model import Finding, Severity, error_finding

VALIDATION_LOOKBACK = timedelta(days=1)
PARITY_SAMPLE = 200
PARITY_RELOAD_MAX = timedelta(days=7)


def check_freshness(c: CheckContext) -> list[Finding]:
    from fs_platform.governance.freshness import check_view
    from fs_platform.metadata import freshness_sla

    findings = []
    views = [v for v in c.store.list_feature_views() if freshness_sla(v) and c.wanted(v.name)]
    for fv in views:
        try:
            v = check_view(c.store, fv.name, c.now)
        except Exception as e:
            findings.append(error_finding("freshness", fv.name, e))
            continue
        evidence = {
            "sla_seconds": v.sla_seconds,
            "offline_newest": fmt_time(v.offline.newest),
            "online_newest": fmt_time(v.online.newest) if v.online else None,
        }
        if not v.breached:
            findings.append(Finding("freshness", Severity.OK, fv.name, "within its freshness SLA", evidence))
            continue
        off, on = v.offline.newest, v.online.newest if v.online else None
        actions = ()
        if v.online is not None and off is not None and (on is None or on < off):
            # Offline holds newer data than online serves: materialization is behind. Reload from the
            # online side's newest value (or the view's ttl) up to now.
            start = on if on is not None else c.now - (fv.ttl or timedelta(days=1))
            start = start.replace(minute=0, second=0, microsecond=0)
            actions = (
                new_action(
                    "rematerialize",
                    {"view": fv.name, "start": start.isoformat(), "end": c.now.isoformat()},
                    f"online data of {fv.name!r} is older than offline and its SLA",
                ),
            )
            msg = (
                f"stale online: newest online {fmt_time(on) or 'none'}, offline has {fmt_time(off)} "
                f"(SLA {v.sla_seconds:g}s)"
            )
        else:
            msg = (
                f"stale offline: newest offline {fmt_time(off) or 'none'} (SLA {v.sla_seconds:g}s); the "
                "source or the ingest is behind, not materialization (check `fs ingest` and the source jobs)"
            )
        findings.append(Finding("freshness", Severity.WARNING, fv.name, msg, evidence, actions))
    return findings


def check_validation(c: CheckContext) -> list[Finding]:
    from fs_platform.governance.validate import list_results

    since = c.now - VALIDATION_LOOKBACK
    latest: dict[str, object] = {}
    for r in list_results(c.store, None, limit=500):  # newest first
        if r.checked_at < since:
            break
        if c.wanted(r.view):
            latest.setdefault(r.view, r)
    findings = []
    for view, r in sorted(latest.items()):
        if r.passed:
            continue
        failed = sorted({f"{x.check}({x.column})" if x.column else x.check for x in r.failures})
        params = {"view": view, "start": fmt_time(r.window_start), "end": fmt_time(r.window_end)}
        a = new_action("rerun_validation", params, f"the latest validation of {view!r} failed")
        findings.append(
            Finding(
                "validation",
                Severity.WARNING,
                view,
                f"latest validation {r.outcome} ({r.origin}, {fmt_time(r.checked_at)}): "
                f"{len(r.failures)}/{len(r.checks)} checks failed",
                {
                    "run_id": r.run_id,
                    "origin": r.origin,
                    "mode": r.mode,
                    "rows": r.rows,
                    "failed_checks": failed[:20],
                },
                (a,),
            )
        )
    if not findings:
        findings.append(
            Finding("validation", Severity.OK, "validation", "no failed validation in the last 24h")
        )
    return findings


def check_parity(c: CheckContext) -> list[Finding]:
    from fs_platform.aggregation.spec import is_aggregation
    from fs_platform.parity import check

    views = {v.name: v for v in c.online_views() if (v.tags or {}).get("tier") == "1"}
    tier1 = list(views)
    if not tier1:
        return [Finding("parity", Severity.OK, "parity", "no tier-1 online views to sample")]
    try:
        report = check(c.store, views=tier1, sample=PARITY_SAMPLE, seed=0)
    except Exception as e:
        return [error_finding("parity", "parity", e)]
    findings = []
    for vr in report.views:
        total = vr.total()
        ev = {
            "compared": total.compared,
            "breaching": total.breaching,
            "breach_rate": round(total.breach_rate, 6),
            "classes": {k: n for k, n in total.counts.items() if n},  # docs/runbooks/parity.md
        }
        sev = Severity.WARNING if vr.breach else Severity.OK
        classes = ", ".join(
            f"{k} {n}" for k, n in sorted(ev["classes"].items(), key=lambda kv: -kv[1]) if k != "matched"
        )
        msg = (
            (
                f"online differs from offline for {total.breaching}/{total.compared} sampled values "
                f"({classes}; `fs parity check --views {vr.view}` explains the classes)"
            )
            if vr.breach
            else "parity sample ok"
        )
        actions = ()
        fv = views[vr.view]
        if vr.breach and not is_aggregation(fv):
            # Reload what online should serve now: the view's ttl (at most a week) up to now.
            window = min(fv.ttl, PARITY_RELOAD_MAX) if fv.ttl else PARITY_RELOAD_MAX
            start = (c.now - window).replace(minute=0, second=0, microsecond=0)
            actions = (
                new_action(
                    "rematerialize",
                    {"view": vr.view, "start": start.isoformat(), "end": c.now.isoformat()},
                    f"parity breach of {vr.view!r}: reload online from offline over its ttl",
                ),
            )
        findings.append(Finding("parity", sev, vr.view, msg, ev, actions))
    return findings
