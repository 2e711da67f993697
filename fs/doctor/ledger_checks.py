"""The ``ledger`` check: failed, rejected, interrupted or half-done chunks of materialize and backfill
runs (proposes ``resume_backfill`` or ``rematerialize``), and dead or never-expiring leases (proposes
``release_lease``)."""

from __future__ import annotations

from fs_platform.doctor.actions import new_action
from fs_platform.doctor.context import CheckContext, fmt_time
from fs_platform.doctor.model import Finding, Severity, error_finding
from fs_platform.doctor.repair_kinds import lease_digest


def check_ledger(c: CheckContext) -> list[Finding]:
    from fs_platform.backfill.model import Kind, Status
    from fs_platform.backfill.runner import Backfiller

    bf = Backfiller(c.platform)
    try:
        statuses = bf.status()
    except Exception as e:
        return [error_finding("ledger", "ledger", e)]
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
                "recorded_at": fmt_time(e.recorded_at),
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


def _dead_leases(c: CheckContext, bf) -> tuple[list[Finding], set[str]]:
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
        findings.append(error_finding("ledger", "leases", e))
    return findings, dead_views
