"""One SCAN of the project's online keys, shared by the online checks and ``fs doctor cost``:
key counts per view and a fixed-size random sample of each view's keys, on which ``MEMORY USAGE``
and ``PTTL`` are asked (sampled: the totals are estimates, said so in the evidence).

Checks here:

``online_store``   Redis unreachable; keys of views no longer registered: proposes ``delete_view_keys``
``online_memory``  memory per view (estimated from the sample), the server's used and max memory
                   (warning above ``MEMORY_WARN`` of ``maxmemory``)
``online_expiry``  keys of a plain view with a ttl that never expire (a writer that bypassed the
                   store, a restore without expiry): proposes ``expire_view_keys``
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from fs_platform.doctor.model import Finding, Severity, error_finding

SCAN_LIMIT = 100_000  # keys looked at by default (--deep: all)
SAMPLE_PER_VIEW = 200
MEMORY_WARN = 0.8  # used_memory / maxmemory


@dataclass
class ViewKeys:
    keys: int = 0
    sample: list[bytes] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)  # MEMORY USAGE of the sampled keys
    persistent: int = 0  # sampled keys without expiry

    @property
    def bytes_estimated(self) -> int:
        return int(sum(self.memory) / len(self.memory) * self.keys) if self.memory else 0

    @property
    def persistent_estimated(self) -> int:
        return round(self.persistent / len(self.sample) * self.keys) if self.sample else 0


@dataclass
class OnlineScan:
    views: dict[str, ViewKeys]
    scanned: int
    complete: bool
    info: dict  # INFO memory: used_memory, maxmemory

    def evidence(self, view: str) -> dict:
        v = self.views[view]
        return {
            "keys": v.keys,
            "sampled": len(v.sample),
            "bytes_estimated": v.bytes_estimated,
            "scan_complete": self.complete,
        }


def scan(c) -> OnlineScan:
    """The project's keys per view (cached on the doctor context ``c``: one SCAN per run)."""
    if c._online_scan is not None:
        return c._online_scan
    from fs_platform.backfill.online import redis_store
    from fs_platform.plugins.redis_store.connection import translated
    from fs_platform.plugins.redis_store.tile_store import MARKS

    state = redis_store(c.store).state(c.store.config)
    before = state.layout.namespace + "{"
    rng = random.Random(0)
    views: dict[str, ViewKeys] = {}
    scanned, complete = 0, True
    with translated(state.endpoint):
        state.client.ping()
        for key in state.client.scan_iter(match=state.layout.project_pattern(), count=1000):
            scanned += 1
            if not c.deep and scanned > SCAN_LIMIT:
                complete = False
                break
            text = key.decode(errors="replace")
            if not text.startswith(before) or "}:" not in text:
                continue  # leases, the store id, schemas
            name = text.rsplit("}:", 1)[1]
            if name.endswith(MARKS):
                name = name[: -len(MARKS)]
                key = None  # offset marks count for the view but are not sampled
            v = views.setdefault(name, ViewKeys())
            v.keys += 1
            if key is None:
                continue
            if len(v.sample) < SAMPLE_PER_VIEW:  # reservoir sample
                v.sample.append(key)
            elif (j := rng.randrange(v.keys)) < SAMPLE_PER_VIEW:
                v.sample[j] = key
        for v in views.values():
            pipe = state.client.pipeline(transaction=False)
            for k in v.sample:
                pipe.memory_usage(k)
                pipe.pttl(k)
            replies = pipe.execute()
            v.memory = [m for m in replies[0::2] if m is not None]
            v.persistent = sum(1 for t in replies[1::2] if t == -1)
        mem = state.client.info("memory")
    info = {"used_memory": mem.get("used_memory"), "maxmemory": mem.get("maxmemory") or None}
    c._online_scan = OnlineScan(views, scanned, complete, info)
    return c._online_scan


def _mb(n: int | None) -> str:
    return f"{(n or 0) / 1e6:.1f} MB"


def check_online(c) -> list[Finding]:
    from fs_platform.doctor.actions import new_action, registered_views

    try:
        scanned = scan(c)
    except Exception as e:
        return [error_finding("online_store", "online_store", e)]
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


def check_memory(c) -> list[Finding]:
    from fs_platform.doctor.actions import registered_views

    try:
        s = scan(c)
    except Exception as e:
        return [error_finding("online_memory", "online_store", e)]
    findings = []
    used, cap = s.info["used_memory"], s.info["maxmemory"]
    share = used / cap if used and cap else None
    sev = Severity.WARNING if share is not None and share >= MEMORY_WARN else Severity.INFO
    msg = f"Redis uses {_mb(used)}" + (
        f" of {_mb(cap)} maxmemory ({share:.0%})" if share is not None else " (no maxmemory)"
    )
    if sev == Severity.WARNING:
        msg += "; near the limit: `fs doctor cost` lists what to trim"
    findings.append(
        Finding("online_memory", sev, "online_store", msg, {**s.info, "scan_complete": s.complete})
    )
    known = registered_views(c.store)
    for name in sorted(s.views):
        if name in known and c.wanted(name):
            e = s.evidence(name)
            findings.append(
                Finding(
                    "online_memory",
                    Severity.INFO,
                    name,
                    f"{e['keys']} key(s), about {_mb(e['bytes_estimated'])} (sampled)",
                    e,
                )
            )
    return findings


def check_expiry(c) -> list[Finding]:
    from fs_platform.aggregation.spec import is_aggregation
    from fs_platform.doctor.actions import new_action

    try:
        s = scan(c)
    except Exception as e:
        return [error_finding("online_expiry", "online_store", e)]
    findings = []
    for fv in c.store.list_feature_views():
        v = s.views.get(fv.name)
        if not c.wanted(fv.name) or not fv.ttl or is_aggregation(fv) or v is None or not v.persistent:
            continue
        n = v.persistent_estimated
        a = new_action(
            "expire_view_keys",
            {"view": fv.name},
            f"keys of {fv.name!r} never expire although the view has a ttl",
        )
        findings.append(
            Finding(
                "online_expiry",
                Severity.WARNING,
                fv.name,
                f"about {n} key(s) of {fv.name!r} never expire although its ttl is "
                f"{fv.ttl}: they hold memory for values no read serves",
                {
                    **s.evidence(fv.name),
                    "persistent_sampled": v.persistent,
                    "persistent_estimated": n,
                    "ttl_seconds": fv.ttl.total_seconds(),
                },
                (a,),
            )
        )
    if not findings:
        findings.append(
            Finding(
                "online_expiry", Severity.OK, "online_store", "every sampled key of a view with a ttl expires"
            )
        )
    return findings
