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
                leases                                                             rematerialize,
                                                                                   release_lease
ingest          broker unreachable, consumer lag, open breakers (ingest.yaml)      -
dead_letters    dead letters not replayed; growth in the last hour                 replay_dead_letters
validation      the latest recorded validation of a view failed                    rerun_validation
schema          a view's Delta table no longer fits the view                       restore_delta
catalog         catalog pages (ops.catalog_docs) differ from the registry          regenerate_catalog_docs
==============  =================================================================  ===========================

``deep=True`` adds ``parity`` (a small sample of tier-1 views online vs offline; Spark), ``drift``
(tier-1 views' last day vs the week before; ``fs_platform.doctor.drift_check``) and scans every key.
``fs doctor cost`` (``fs_platform.doctor.cost``) and ``fs doctor triage``
(``fs_platform.doctor.triage``) build on the same checks.

The checks live in ``definition_checks`` (registry, schema, catalog), ``online_scan`` (online_*),
``data_checks`` (freshness, validation, parity), ``ledger_checks``, ``ingest_checks`` and
``drift_check``; this module runs them, each against one ``context.CheckContext``.

Evidence holds names, counts, times and versions: never feature values or entity keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from fs_platform.doctor import (
    data_checks,
    definition_checks,
    drift_check,
    ingest_checks,
    ledger_checks,
    online_scan,
)
from fs_platform.doctor.context import CheckContext
from fs_platform.doctor.model import DoctorReport, Finding, error_finding
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

CHECKS: dict[str, Callable[[CheckContext], list[Finding]]] = {
    "registry": definition_checks.check_registry,
    "online_store": online_scan.check_online,
    "online_memory": online_scan.check_memory,
    "online_expiry": online_scan.check_expiry,
    "freshness": data_checks.check_freshness,
    "ledger": ledger_checks.check_ledger,
    "ingest": ingest_checks.check_ingest,
    "dead_letters": ingest_checks.check_dead_letters,
    "validation": data_checks.check_validation,
    "schema": definition_checks.check_schema,
    "catalog": definition_checks.check_catalog,
    "parity": data_checks.check_parity,
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
    c = CheckContext(platform, views, deep, now or utcnow())
    if views:
        c.online_views()  # a typo in --views is an error, not a clean bill of health
    findings: list[Finding] = []
    for name in names:
        try:
            findings += CHECKS[name](c)
        except Exception as e:  # one broken check never hides the others
            log.debug("check %s failed", name, exc_info=True)
            findings.append(error_finding(name, name, e))
    return DoctorReport(c.now, platform.env, platform.project, findings, names, time.monotonic() - started)
