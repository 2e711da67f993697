"""``fs doctor cost`` (FinOps): where the platform spends memory and storage it need not, each with
an estimated saving and a proposed action. Findings are ``info`` (nothing is broken); the report is a
``DoctorReport``, so ``--plan`` writes its typed actions for ``fs ops apply`` like any other.

=============  =====================================================  ===================================
check          finds (estimated from a sample)                        proposes
=============  =====================================================  ===================================
cost_memory    online memory per view and per feature (``MEMORY       -
               USAGE`` of sampled keys, split by each feature's
               share of the encoded row)
cost_unused    features of online views that no feature service uses  drop them from the view, or
                                                                      ``online=False`` (a reviewed apply)
cost_ttl       views whose ttl is over ``TTL_SLA_RATIO`` times their  lower the ttl (a reviewed apply):
               freshness SLA: the memory of values older than that    saving = those values' memory
cost_delta     Delta tables with ``SMALL_FILES`` or more small files;  ``compact_delta``; ``vacuum_delta``
               files no version of the rollback window needs
=============  =====================================================  ===================================
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime
from urllib.parse import unquote, urlparse

from fs_platform.doctor.model import DoctorReport, Finding, Severity, error_finding
from fs_platform.timeutil import utcnow

TTL_SLA_RATIO = 10
SMALL_FILE_BYTES = 8 * 1024 * 1024
SMALL_FILES = 8
TARGET_FILE_BYTES = 128 * 1024 * 1024


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _dur(td) -> str:
    """365d, 36h, 15m, 90s: the largest unit that divides it."""
    seconds = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _online_views(c) -> list:
    return [v for v in c.store.list_feature_views() if v.online and c.wanted(v.name)]


def _values(c, keys: list[bytes]) -> list[bytes]:
    from fs_platform.backfill.online import redis_store
    from fs_platform.plugins.redis_store.connection import translated

    state = redis_store(c.store).state(c.store.config)
    with translated(state.endpoint):
        return [v for v in state.client.mget(keys) if v is not None] if keys else []


def feature_bytes(c, fv) -> dict[str, int]:
    """Estimated online bytes per feature of a plain view: its memory split by each feature's share of
    the sampled rows' encoded length (``[event_us, created_us, fp, v1..vn]``). {} for tile views."""
    from fs_platform.aggregation.spec import is_aggregation
    from fs_platform.doctor.online_scan import scan

    v = scan(c).views.get(fv.name)
    if v is None or is_aggregation(fv):
        return {}
    names = [f.name for f in fv.features]
    sizes = [0] * len(names)
    for raw in _values(c, v.sample):
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        for i, value in enumerate(row[3 : 3 + len(names)]):
            sizes[i] += len(json.dumps(value))
    total = sum(sizes)
    return (
        {n: round(v.bytes_estimated * s / total) for n, s in zip(names, sizes, strict=True)} if total else {}
    )


def check_memory(c) -> list[Finding]:
    from fs_platform.doctor.online_scan import scan

    s = scan(c)
    findings = []
    for fv in _online_views(c):
        if fv.name not in s.views:
            continue
        per = feature_bytes(c, fv)
        top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
        e = {**s.evidence(fv.name), "feature_bytes": per}
        msg = f"{e['keys']} key(s), about {_mb(e['bytes_estimated'])}" + (
            f"; largest features: {', '.join(f'{n} {_mb(b)}' for n, b in top)}" if top else ""
        )
        findings.append(Finding("cost_memory", Severity.INFO, fv.name, msg, e))
    return findings or [Finding("cost_memory", Severity.OK, "online_store", "no online keys")]


def check_unused(c) -> list[Finding]:
    used = {
        (p.name, f.name)
        for s in c.store.list_feature_services()
        for p in s.feature_view_projections
        for f in p.features
    }
    findings = []
    for fv in _online_views(c):
        unused = [f.name for f in fv.features if (fv.name, f.name) not in used]
        if not unused:
            continue
        per = feature_bytes(c, fv)
        saving = sum(per.get(n, 0) for n in unused)
        whole = len(unused) == len(fv.features)
        proposal = (
            f"set online=False on {fv.name!r} (no service reads it), or delete it"
            if whole
            else f"drop {', '.join(unused)} from {fv.name!r}"
        ) + "; a reviewed `fs plan` / `fs apply`"
        findings.append(
            Finding(
                "cost_unused",
                Severity.INFO,
                fv.name,
                f"{len(unused)} of {len(fv.features)} feature(s) used by no feature service; "
                f"saving about {_mb(saving)} online: {proposal}",
                {"unused": unused, "saving_bytes": saving, "proposal": proposal},
            )
        )
    return findings or [
        Finding("cost_unused", Severity.OK, "features", "every online feature is in a service")
    ]


def check_ttl(c) -> list[Finding]:
    from fs_platform.aggregation.spec import is_aggregation
    from fs_platform.doctor.online_scan import scan
    from fs_platform.metadata import freshness_sla

    s = scan(c)
    findings = []
    for fv in _online_views(c):
        sla = freshness_sla(fv)
        if (
            not fv.ttl or not sla or fv.ttl <= sla * TTL_SLA_RATIO or is_aggregation(fv)
        ):  # tiles: longest window
            continue
        needed = sla * TTL_SLA_RATIO
        cutoff_us = int((c.now - needed).timestamp() * 1e6)
        v = s.views.get(fv.name)
        old = sample = 0
        for raw in _values(c, v.sample) if v else []:
            head = raw[1 : raw.find(b",")]
            sample += 1
            old += head.lstrip(b"-").isdigit() and int(head) < cutoff_us
        saving = round(v.bytes_estimated * old / sample) if v and sample else 0
        proposal = f"lower the ttl of {fv.name!r} toward {_dur(needed)} (a reviewed `fs apply`)"
        findings.append(
            Finding(
                "cost_ttl",
                Severity.INFO,
                fv.name,
                f"ttl {_dur(fv.ttl)} is {fv.ttl / sla:.0f}x its freshness SLA {_dur(sla)}: values "
                f"older than {_dur(needed)} take about {_mb(saving)} ({old}/{sample} sampled); {proposal}",
                {
                    "ttl_seconds": fv.ttl.total_seconds(),
                    "sla_seconds": sla.total_seconds(),
                    "older_sampled": old,
                    "sampled": sample,
                    "saving_bytes": saving,
                    "proposal": proposal,
                },
            )
        )
    return findings or [
        Finding("cost_ttl", Severity.OK, "ttl", f"no ttl over {TTL_SLA_RATIO}x its view's SLA")
    ]


def _local_size(table_uri: str, path: str) -> int:
    parsed = urlparse(path if "://" in path else table_uri.rstrip("/") + "/" + path)
    if parsed.scheme not in ("", "file"):
        return 0  # object stores: counted, not sized
    try:
        return os.path.getsize(unquote(parsed.path))
    except OSError:
        return 0


def check_delta(c) -> list[Finding]:
    import pyarrow as pa
    from deltalake import DeltaTable

    from fs_platform.doctor.actions import new_action
    from fs_platform.doctor.policy import load_ops_settings
    from fs_platform.plugins.delta.source import DeltaSource
    from fs_platform.plugins.delta.tables import resolve_location, storage_options

    window_h = load_ops_settings(c.platform.config).rollback_retention_days * 24
    findings, seen = [], set()
    for fv in [*c.store.list_feature_views(), *c.store.list_stream_feature_views()]:
        if not c.wanted(fv.name) or not isinstance(fv.batch_source, DeltaSource) or not fv.batch_source.path:
            continue
        location = resolve_location(fv, c.store.config)
        if location in seen:
            continue
        seen.add(location)
        try:
            table = DeltaTable(location, storage_options=storage_options(fv.batch_source) or None)
            sizes = pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist()
            hours = max(window_h, _table_retention_h(table))
            unreferenced = table.vacuum(
                retention_hours=math.ceil(hours), dry_run=True, enforce_retention_duration=False
            )
        except Exception as e:
            findings.append(error_finding("cost_delta", fv.name, e))
            continue
        small = [s for s in sizes if s < SMALL_FILE_BYTES]
        if len(small) >= SMALL_FILES:
            after = max(1, math.ceil(sum(small) / TARGET_FILE_BYTES))
            a = new_action(
                "compact_delta", {"view": fv.name}, f"{len(small)} small files in the table of {fv.name!r}"
            )
            findings.append(
                Finding(
                    "cost_delta",
                    Severity.INFO,
                    fv.name,
                    f"{len(small)} small file(s) ({_mb(sum(small))}): compaction leaves about {after}, "
                    "fewer files to list and open per read",
                    {
                        "files": len(sizes),
                        "small_files": len(small),
                        "files_after": after,
                        "saving_files": len(small) - after,
                    },
                    (a,),
                )
            )
        if unreferenced:
            freed = sum(_local_size(table.table_uri, p) for p in unreferenced)
            a = new_action(
                "vacuum_delta",
                {"view": fv.name},
                f"{len(unreferenced)} file(s) of {fv.name!r}'s table no retained version needs",
            )
            findings.append(
                Finding(
                    "cost_delta",
                    Severity.INFO,
                    fv.name,
                    f"{len(unreferenced)} file(s) ({_mb(freed)}) belong only to versions older than "
                    f"{hours:g} h (the rollback window and the table's retention): vacuum frees them",
                    {
                        "unreferenced_files": len(unreferenced),
                        "saving_bytes": freed,
                        "retention_hours": hours,
                    },
                    (a,),
                )
            )
    return findings or [
        Finding("cost_delta", Severity.OK, "delta", "no Delta table with many small or old files")
    ]


def _table_retention_h(table) -> float:
    """The table's ``delta.deletedFileRetentionDuration`` in hours (Delta's default: 1 week)."""
    raw = (table.metadata().configuration or {}).get("delta.deletedFileRetentionDuration", "interval 1 week")
    number, _, unit = raw.lower().removeprefix("interval").strip().partition(" ")
    sizes = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
    try:
        return float(number) * next(v for k, v in sizes.items() if unit.startswith(k)) / 3600
    except (StopIteration, ValueError):
        return 168.0


CHECKS = {
    "cost_memory": check_memory,
    "cost_unused": check_unused,
    "cost_ttl": check_ttl,
    "cost_delta": check_delta,
}


def cost(
    platform, views: list[str] | None = None, *, deep: bool = False, now: datetime | None = None
) -> DoctorReport:
    """The cost findings (module docstring); a check that cannot run is an ``error`` finding."""
    from fs_platform.doctor.context import CheckContext

    started = time.monotonic()
    c = CheckContext(platform, views, deep, now or utcnow())
    if views:
        c.online_views()
    findings: list[Finding] = []
    for name, check in CHECKS.items():
        try:
            findings += check(c)
        except Exception as e:
            findings.append(error_finding(name, name, e))
    return DoctorReport(
        c.now, platform.env, platform.project, findings, list(CHECKS), time.monotonic() - started
    )
