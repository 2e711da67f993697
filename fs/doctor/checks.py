"""``doctor``: every health check in one pass, as typed findings with proposed actions.

    from fs_platform import Platform
    from fs_platform.doctor import doctor
    report = doctor(Platform("feature_repo"), views=None, deep=False)
    report.worst            # Severity.OK / INFO / WARNING / ERROR
    report.actions          # what `fs doctor --plan FILE` would write

Default checks (fast: Delta logs, one Redis SCAN, the ledger, the validation log, the broker; no Spark job):

==============  =================================================================  ===========================
check           finds                                                              proposes
==============  =================================================================  ===========================
registry        the registry is unreachable, or differs from the repo (`fs plan`)  (a reviewed `fs apply`)
online_store    Redis unreachable; keys of views no longer registered              delete_view_keys
online_memory   memory per view (sampled), Redis used vs maxmemory                 -
online_expiry   keys of a view with a ttl that never expire                        expire_view_keys
freshness       a view older than its SLA (online behind offline, or offline)      rematerialize
ledger          failed / rejected / interrupted chunks; dead or never-expiring     resume_backfill,
                leases                                                             rematerialize, release_lease
ingest          broker unreachable, consumer lag, open breakers (ingest.yaml)     -
dead_letters    dead letters not replayed; growth in the last hour                 replay_dead_letters
validation      the latest recorded validation of a view failed                    rerun_validation
schema          a view's Delta table no longer fits the view                       restore_delta
catalog         catalog pages (ops.catalog_docs) differ from the registry          regenerate_catalog_docs
==============  =================================================================  ===========================

``deep=True`` adds ``parity`` (a small sample of tier-1 views online vs offline; Spark), ``drift``
(tier-1 views' last day vs the week before; ``fs_platform.doctor.drift_check``) and scans every key.
``fs doctor cost`` (``fs_platform.doctor.cost``) and ``fs doctor triage``
(``fs_platform.doctor.triage``) build on the same checks.

Evidence holds names, counts, times and versions: never feature values or entity keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from fs_platform.doctor import drift_check, ingest_checks, online_scan
from fs_platform.doctor.actions import lease_digest, new_action, registered_views
from fs_platform.doctor.model import DoctorReport, Finding, Severity, error_finding
from fs_platform.timeutil import utcnow

log = logging.getLogger(__name__)

DEFAULT_CHECKS = (
    "registry",
    "online_store",
    "online_memory",
    "online_expiry",
    "freshness",
    "ledger",
    "ingest",
    "dead_letters",
    "validation",
    "schema",
    "catalog",
)
DEEP_CHECKS = ("parity", "drift")
VALIDATION_LOOKBACK = timedelta(days=1)
PARITY_SAMPLE = 200
PARITY_RELOAD_MAX = timedelta(days=7)


class _Ctx:
    def __init__(self, platform, views: list[str] | None, deep: bool, now: datetime):
        self.platform, self.views, self.deep, self.now = platform, views, deep, now
        self._online_scan = None  # online_scan.scan: one SCAN per run, shared by the online checks
        self._ingest = None  # ingest_checks: (config, kafka kwargs), or why the broker did not answer

    @property
    def store(self):
        return self.platform.store

    def online_views(self) -> list:
        from fs_platform.views import feature_views

        return (
            feature_views(self.store, self.views, online=True)
            if self.views
            else [v for v in self.store.list_feature_views() if v.online]
        )

    def wanted(self, view: str) -> bool:
        return not self.views or view in self.views


_err = error_finding


def _fmt(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="seconds") if ts else None


# -- registry -------------------------------------------------------------------------------------
def check_registry(c: _Ctx) -> list[Finding]:
    try:
        c.store.list_feature_views()
    except Exception as e:
        return [_err("registry", "registry", e)]
    plan = c.platform.plan()
    if plan.empty:
        return [
            Finding(
                "registry", Severity.OK, "registry", "reachable and in sync with the repo (fs plan is empty)"
            )
        ]
    changes = [f"{ch.action} {ch.kind} {ch.name}" for ch in [*plan.changes, *plan.infra_changes]]
    return [
        Finding(
            "registry",
            Severity.WARNING,
            "registry",
            f"the registry differs from the repo: {len(changes)} change(s) not applied",
            {"changes": changes[:50]},
        )
    ]  # (an apply is a reviewed change: `fs plan`, then `fs apply`)


# -- online store ---------------------------------------------------------------------------------
def check_online(c: _Ctx) -> list[Finding]:
    from fs_platform.doctor.online_scan import scan

    try:
        scanned = scan(c)
    except Exception as e:
        return [_err("online_store", "online_store", e)]
    complete = scanned.complete
    known = registered_views(c.store)
    findings = []
    for view, keys in sorted(scanned.views.items()):
        if view in known:
            continue
        n = keys.keys
        a = new_action(
            "delete_view_keys", {"view": view}, f"{n} online key(s) of {view!r}, a view no longer registered"
        )
        findings.append(
            Finding(
                "online_store",
                Severity.WARNING,
                view,
                f"{n} online key(s) left behind by deleted feature view {view!r}",
                {"keys": n, "scan_complete": complete},
                (a,),
            )
        )
    if not findings:
        msg = f"reachable; {scanned.scanned} key(s) scanned, none of deleted views" + (
            "" if complete else " (sampled; --deep scans all)"
        )
        findings.append(
            Finding("online_store", Severity.OK, "online_store", msg, {"scan_complete": complete})
        )
    return findings


# -- freshness ------------------------------------------------------------------------------------
def check_freshness(c: _Ctx) -> list[Finding]:
    from fs_platform.governance.freshness import check_view
    from fs_platform.metadata import freshness_sla

    findings = []
    views = [v for v in c.store.list_feature_views() if freshness_sla(v) and c.wanted(v.name)]
    for fv in views:
        try:
            v = check_view(c.store, fv.name, c.now)
        except Exception as e:
            findings.append(_err("freshness", fv.name, e))
            continue
        evidence = {
            "sla_seconds": v.sla_seconds,
            "offline_newest": _fmt(v.offline.newest),
            "online_newest": _fmt(v.online.newest) if v.online else None,
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
            msg = f"stale online: newest online {_fmt(on) or 'none'}, offline has {_fmt(off)} (SLA {v.sla_seconds:g}s)"
        else:
            msg = (
                f"stale offline: newest offline {_fmt(off) or 'none'} (SLA {v.sla_seconds:g}s); the source or the "
                "ingest is behind, not materialization (check `fs ingest` and the source jobs)"
            )
        findings.append(Finding("freshness", Severity.WARNING, fv.name, msg, evidence, actions))
    return findings


# -- ledger and leases ----------------------------------------------------------------------------
def check_ledger(c: _Ctx) -> list[Finding]:
    from fs_platform.backfill.model import Kind, Status
    from fs_platform.backfill.runner import Backfiller

    bf = Backfiller(c.platform)
    try:
        statuses = bf.status()
    except Exception as e:
        return [_err("ledger", "ledger", e)]
    lease_findings, dead = _dead_leases(c, bf)
    findings = []
    for st in statuses:
        if not c.wanted(st.view):
            continue
        for e in st.pending:
            interval = {"start": e.start.isoformat(), "end": e.end.isoformat()}
            evidence = {
                "target": st.target.value,
                "kind": e.kind.value,
                "status": e.status.value,
                **interval,
                "run_id": e.run_id,
                "recorded_at": _fmt(e.recorded_at),
            }
            if e.status == Status.RUNNING and st.lease_holder and st.view not in dead:
                findings.append(
                    Finding(
                        "ledger",
                        Severity.INFO,
                        st.view,
                        f"{st.target.value} chunk {e.interval} is running (leased)",
                        evidence,
                    )
                )
                continue
            what = {
                Status.RUNNING: "interrupted (running, no live run holds the view)",
                Status.PLANNED: "planned but never run (half-done run)",
            }.get(e.status, e.status.value)
            chunk_s = int((e.end - e.start).total_seconds())
            if e.kind == Kind.BACKFILL:
                a = new_action(
                    "resume_backfill",
                    {"view": st.view, **interval, "to": st.target.value, "chunk_seconds": chunk_s},
                    f"{st.target.value} backfill chunk {e.interval} {e.status.value}",
                )
            else:
                a = new_action(
                    "rematerialize",
                    {"view": st.view, **interval, "chunk_seconds": chunk_s},
                    f"materialization chunk {e.interval} {e.status.value}",
                )
            findings.append(
                Finding(
                    "ledger",
                    Severity.WARNING,
                    st.view,
                    f"{st.target.value} {e.kind.value} chunk {e.interval} {what}"
                    + (f": {e.message}" if e.message else ""),
                    evidence,
                    (a,),
                )
            )
    findings += lease_findings
    if not findings:
        findings.append(
            Finding(
                "ledger", Severity.OK, "ledger", "no failed, interrupted or half-done chunks; no dead leases"
            )
        )
    return findings


def _dead_leases(c: _Ctx, bf) -> tuple[list[Finding], set[str]]:
    """Leases that block a view for nothing: the holder is provably dead (this host, process gone),
    or the lease never expires. Returns the findings and the views so leased."""
    from fs_platform.backfill.lease import _record, provably_dead

    findings, dead_views = [], set()
    try:
        leases = bf.leases
        with leases.calls():
            client = leases._client
            prefix = leases.key("")
            for key in client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
                raw, pttl = client.get(key), client.pttl(key)
                if raw is None:
                    continue
                view = key.decode()[len(prefix) :]
                if not c.wanted(view):
                    continue
                dead = provably_dead(_record(raw))
                if not dead and pttl != -1:
                    continue
                dead_views.add(view)
                why = "its holder's process is gone (this host)" if dead else "it never expires (no TTL)"
                a = new_action(
                    "release_lease",
                    {"view": view, "digest": lease_digest(raw)},
                    f"the lease of {view!r} is dead: {why}",
                )
                findings.append(
                    Finding(
                        "ledger",
                        Severity.WARNING,
                        view,
                        f"dead lease on {view!r}: {why}",
                        {"pttl_ms": pttl, "holder_digest": lease_digest(raw)[:12]},
                        (a,),
                    )
                )
    except Exception as e:
        findings.append(_err("ledger", "leases", e))
    return findings, dead_views


# -- validation -----------------------------------------------------------------------------------
def check_validation(c: _Ctx) -> list[Finding]:
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
        params = {"view": view, "start": _fmt(r.window_start), "end": _fmt(r.window_end)}
        a = new_action("rerun_validation", params, f"the latest validation of {view!r} failed")
        findings.append(
            Finding(
                "validation",
                Severity.WARNING,
                view,
                f"latest validation {r.outcome} ({r.origin}, {_fmt(r.checked_at)}): "
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


# -- Delta schema drift ---------------------------------------------------------------------------
MAX_VERSIONS_BACK = 20


def check_schema(c: _Ctx) -> list[Finding]:
    from deltalake import DeltaTable

    from fs_platform.plugins.delta.schema import schema_problems, table_columns
    from fs_platform.plugins.delta.source import DeltaSource
    from fs_platform.plugins.delta.tables import resolve_location, schema_of, storage_options

    findings = []
    views = [*c.store.list_feature_views(), *c.store.list_stream_feature_views()]
    for fv in views:
        if not c.wanted(fv.name) or not isinstance(fv.batch_source, DeltaSource) or not fv.batch_source.path:
            continue
        try:
            problems = schema_problems(fv, table_columns(fv, c.store.config))
        except Exception as e:
            findings.append(_err("schema", fv.name, e))
            continue
        if not problems:
            continue
        location = resolve_location(fv, c.store.config)
        table = DeltaTable(location, storage_options=storage_options(fv.batch_source) or None)
        current = table.version()
        fits = None
        for v in range(current - 1, max(-1, current - 1 - MAX_VERSIONS_BACK), -1):
            try:
                table.load_as_version(v)
            except Exception:
                break
            if not schema_problems(fv, dict(schema_of(table))):
                fits = v
                break
        actions = ()
        if fits is not None:
            actions = (
                new_action(
                    "restore_delta",
                    {"view": fv.name, "version": fits},
                    f"the Delta table of {fv.name!r} no longer fits the view; version {fits} did",
                ),
            )
        findings.append(
            Finding(
                "schema",
                Severity.ERROR,
                fv.name,
                f"the Delta table of {fv.name!r} does not fit the view: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                {"problems": problems, "version": current, "last_fitting_version": fits},
                actions,
            )
        )
    if not findings:
        findings.append(Finding("schema", Severity.OK, "schema", "every view's Delta table fits the view"))
    return findings


# -- deep: parity ---------------------------------------------------------------------------------
def check_parity(c: _Ctx) -> list[Finding]:
    from fs_platform.aggregation.spec import is_aggregation
    from fs_platform.parity import check

    views = {v.name: v for v in c.online_views() if (v.tags or {}).get("tier") == "1"}
    tier1 = list(views)
    if not tier1:
        return [Finding("parity", Severity.OK, "parity", "no tier-1 online views to sample")]
    try:
        report = check(c.store, views=tier1, sample=PARITY_SAMPLE, seed=0)
    except Exception as e:
        return [_err("parity", "parity", e)]
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
                f"online differs from offline for {total.breaching}/{total.compared} sampled values ({classes}; "
                f"`fs parity check --views {vr.view}` explains the classes)"
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


# -- catalog docs ---------------------------------------------------------------------------------
def check_catalog(c: _Ctx) -> list[Finding]:
    from pathlib import Path

    from fs_platform.doctor.policy import load_ops_settings
    from fs_platform.governance.catalog import build_catalog, catalog_pages, stale_pages
    from fs_platform.plugins.delta.tables import resolve_path

    where = load_ops_settings(c.platform.config).catalog_docs
    if not where:
        return [
            Finding(
                "catalog", Severity.OK, "catalog", "ops.catalog_docs is not set: catalog pages not checked"
            )
        ]
    out = Path(resolve_path(where, c.platform.repo_path))
    pages = catalog_pages(build_catalog(c.store))
    changed = sorted(
        n for n, text in pages.items() if not (out / n).is_file() or (out / n).read_text() != text
    )
    removed = stale_pages(pages, out) if out.is_dir() else []
    if not changed and not removed:
        return [
            Finding("catalog", Severity.OK, "catalog", f"the catalog pages in {where} match the registry")
        ]
    a = new_action(
        "regenerate_catalog_docs",
        {"path": str(out)},
        f"{len(changed) + len(removed)} catalog page(s) in {where} differ from the registry",
    )
    return [
        Finding(
            "catalog",
            Severity.WARNING,
            "catalog",
            f"the catalog pages in {where} are out of date: {len(changed)} to (re)write, {len(removed)} of "
            "deleted views to remove",
            {"changed": changed[:50], "removed": removed[:50]},
            (a,),
        )
    ]


CHECKS: dict[str, Callable[[_Ctx], list[Finding]]] = {
    "registry": check_registry,
    "online_store": check_online,
    "online_memory": online_scan.check_memory,
    "online_expiry": online_scan.check_expiry,
    "freshness": check_freshness,
    "ledger": check_ledger,
    "ingest": ingest_checks.check_ingest,
    "dead_letters": ingest_checks.check_dead_letters,
    "validation": check_validation,
    "schema": check_schema,
    "catalog": check_catalog,
    "parity": check_parity,
    "drift": drift_check.check_drift,
}


def doctor(
    platform,
    views: list[str] | None = None,
    *,
    deep: bool = False,
    checks: list[str] | None = None,
    now: datetime | None = None,
) -> DoctorReport:
    """Run the checks (default: the fast ones; ``deep`` adds parity and drift); never raises for what a check
    finds: a check that cannot run is an ``error`` finding of that check."""
    started = time.monotonic()
    names = list(checks or (*DEFAULT_CHECKS, *(DEEP_CHECKS if deep else ())))
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        from fs_platform.errors import InvalidArgument

        raise InvalidArgument(f"--check: unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    c = _Ctx(platform, views, deep, now or utcnow())
    if views:
        c.online_views()  # a typo in --views is an error, not a clean bill of health
    findings: list[Finding] = []
    for name in names:
        try:
            findings += CHECKS[name](c)
        except Exception as e:  # one broken check never hides the others
            log.debug("check %s failed", name, exc_info=True)
            findings.append(_err(name, name, e))
    return DoctorReport(c.now, platform.env, platform.project, findings, names, time.monotonic() - started)
