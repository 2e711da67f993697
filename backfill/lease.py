"""Per-view leases in Redis: one materialization or backfill of a view at a time, across machines.

A lease is one key ``<namespace>_fs:lease:<view>`` holding the holder's description, set with
``PX`` = the lease TTL (10 s by default). The holder's heartbeat thread extends it every fifth of the
TTL; a killed holder stops extending, the key expires, and the next run takes over. Acquire, extend
and release are Lua scripts that compare the stored token first, so a run can never extend or
release a lease another run took over after it stalled; it notices at its next heartbeat and stops
before its next chunk commits (``check``). The stream ingestor takes no lease: event-time-ordered
online writes make it safe beside any run.

A holder that is provably dead is taken over at once instead of after the TTL: the lease records
the holder's process (host name, boot id, PID namespace, pid and the process's start time), and a
run on the same host, boot and PID namespace that finds that process gone (no such pid, a zombie,
or the pid reused by a process started at another time) replaces the lease with a compare-and-set
on the dead holder's exact value. Anything less certain (another host, another container, no
``/proc``, an older lease without these fields) waits for the TTL, as a stalled holder's lease must.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from fs_platform.errors import BackfillError, LeaseHeldError
from fs_platform.plugins.redis_store.connection import Endpoint, translated

log = logging.getLogger(__name__)

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_TAKEOVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def describe_self(run_id: str) -> str:
    """``user@host pid N run R``: who holds a lease (shown to the run that is refused)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()} run {run_id}"


def _this_process() -> dict:
    """Where this process runs: what a later run on the same host needs to prove it dead. The pid and
    start time are read at every call (a forked child is another process)."""
    pid = os.getpid()
    return {**_this_host(), "pid": pid, "start": _process_start(pid)}


@functools.cache
def _this_host() -> dict:
    return {"host": socket.gethostname(), "boot": _boot_id(), "pidns": _pid_namespace()}


def _boot_id() -> str | None:
    try:
        return open("/proc/sys/kernel/random/boot_id").read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from ``/proc``; None if unreadable."""
    try:
        raw = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces and parentheses
    return fields[0], int(fields[19])


def _process_start(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def provably_dead(record: dict) -> bool:
    """Whether the lease holder described by ``record`` is certainly gone: it ran on this host, this
    boot and in this PID namespace, and its process no longer exists (or is a zombie, or its pid now
    belongs to a process started at another time). False whenever that cannot be proven."""
    me = _this_process()
    if not all(me.get(k) is not None and record.get(k) == me[k] for k in ("host", "boot", "pidns")):
        return False
    pid, start = record.get("pid"), record.get("start")
    if not isinstance(pid, int) or not isinstance(start, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True  # no such process
    except PermissionError:
        pass  # exists, another user's
    stat = _stat(pid)
    if stat is None:  # exists, but /proc does not show it (hidepid): cannot prove anything
        return False
    state, started = stat
    return started != start or state in ("Z", "X")


@dataclass(frozen=True)
class LeaseInfo:
    view: str
    holder: str
    ttl_ms: int


class LeaseStore:
    """Leases of one project in one Redis (the online store's server and tenant prefix)."""

    def __init__(self, client, namespace: str, ttl_seconds: float, endpoint: Endpoint | None = None):
        self._client = client
        self._namespace = namespace
        self.endpoint = endpoint or _endpoint_of(client)
        self.ttl_ms = int(ttl_seconds * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._takeover = client.register_script(_TAKEOVER)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    def calls(self) -> contextlib.AbstractContextManager[None]:
        """Redis errors as platform errors (unreachable: ``OnlineStoreUnavailable``; ACL: denied)."""
        return translated(self.endpoint)

    def key(self, view: str) -> str:
        return f"{self._namespace}_fs:lease:{view}"

    @property
    def namespace(self) -> str:
        return self._namespace

    def store_id(self) -> str:
        """The identity of this online store (server + tenant prefix + project), kept in the store:
        ``<namespace>_fs:store``, a random id set once (``SET NX``). A teardown or flush deletes it, so
        the emptied store gets a new identity and nothing recorded about the old one applies to it."""
        key = f"{self._namespace}_fs:store"
        with self.calls():
            raw = self._client.get(key)
            if raw is None:
                self._client.set(key, uuid.uuid4().hex, nx=True)
                raw = self._client.get(key)
        if raw is None:  # evicted between the two calls: next time
            raise BackfillError(f"cannot read the online store's identity ({key})", hint="retry")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def holder(self, view: str) -> LeaseInfo | None:
        with self.calls():
            raw = self._client.get(self.key(view))
            if raw is None:
                return None
            return LeaseInfo(view, _record(raw).get("holder", "?"), int(self._client.pttl(self.key(view))))

    def acquire(self, view: str, holder: str) -> Lease:
        """Take the lease of ``view``: free, expired, or held by a provably dead process on this host
        (taken at once, see the module docstring); ``LeaseHeldError`` otherwise."""
        token = json.dumps({"holder": holder, "token": uuid.uuid4().hex, **_this_process()})
        key = self.key(view)
        for _ in range(3):  # a dead holder's lease changed under us (expired, taken): look again
            with self.calls():
                current = self._acquire(keys=[key], args=[token, self.ttl_ms])
            if current is None:
                return Lease(self, view, holder, token)
            record = _record(current)
            if not provably_dead(record):
                break
            with self.calls():
                taken = self._takeover(keys=[key], args=[current, token, self.ttl_ms])
            if taken:
                log.warning(
                    "took over the lease on %s from %s: that process is gone", view, record.get("holder")
                )
                return Lease(self, view, holder, token)
        raise LeaseHeldError(
            f"feature view {view!r} is being materialized/backfilled by "
            f"{record.get('holder', 'another run')}",
            hint=f"wait for it; a holder that died on this host is taken over at once, one on another host "
            f"once its lease expires (at most {self.ttl_ms / 1000:g}s after it died); "
            f"`fs backfill status {view}` shows the holder",
        )


class Lease:
    """A held lease; a context manager that heartbeats until released."""

    def __init__(self, store: LeaseStore, view: str, holder: str, token: str):
        self.store, self.view, self.holder = store, view, holder
        self._token = token
        self._lost: str | None = None  # why the lease is no longer ours
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{view}", daemon=True)
        self._thread.start()

    def _extend_once(self) -> bool:
        """Extend the lease by its TTL if our token still holds it (one atomic script call)."""
        with self.store.calls():
            return bool(
                self.store._extend(keys=[self.store.key(self.view)], args=[self._token, self.store.ttl_ms])
            )

    def _beat(self) -> None:
        interval = self.store.ttl_ms / 5000  # five tries per TTL: a lost heartbeat or two is harmless
        extended = time.monotonic()  # the lease is valid until extended + ttl
        while not self._stop.wait(interval):
            try:
                ok = self._extend_once()
            except Exception as e:  # Redis blip: keep trying until the lease would have expired
                if time.monotonic() - extended >= self.store.ttl_ms / 1000:
                    self._lost = "heartbeats failed for longer than the lease TTL, so it may have expired"
                    log.error("lease on %s lost: %s (%s)", self.view, self._lost, type(e).__name__)
                    return
                log.warning("lease heartbeat for %s failed: %s", self.view, e)
                continue
            if not ok:
                self._lost = "it expired and another run took it over"
                log.error("lease on %s was lost (expired and taken over)", self.view)
                return
            extended = time.monotonic()

    def check(self) -> None:
        """Raise unless the lease is still ours; called before every chunk commit.

        Extends it in the same call (one round trip): the heartbeat thread may not have noticed yet
        that the lease expired (failed heartbeats, a process paused for longer than the TTL), and
        another run could hold it by now. Refuses to commit when ownership cannot be confirmed."""
        if not self._lost:
            try:
                ok = self._extend_once()
            except Exception as e:
                raise BackfillError(
                    f"cannot confirm the lease on feature view {self.view!r} before committing: "
                    f"{type(e).__name__}",
                    hint=f"check Redis, then rerun with --resume (`fs backfill status {self.view}`)",
                ) from e
            if not ok:
                self._lost = "it expired and another run took it over"
        if self._lost:
            raise BackfillError(
                f"lost the lease on feature view {self.view!r} ({self._lost}); stopped before committing",
                hint=f"check `fs backfill status {self.view}`, then rerun with --resume",
            )

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with self.store.calls():
                self.store._release(keys=[self.store.key(self.view)], args=[self._token])
        except Exception as e:  # the key expires by itself; never mask the run's own outcome
            log.warning("could not release the lease on %s: %s", self.view, e)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _record(raw) -> dict:
    try:
        record = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _endpoint_of(client) -> Endpoint:
    """A loggable description of a plain redis-py client's server (no credentials)."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    return Endpoint(f"redis://{kw.get('host', 'unknown')}:{kw.get('port', 6379)}", "standalone")
