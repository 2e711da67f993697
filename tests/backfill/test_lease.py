"""Leases on the machine's Redis: exclusive, named holder, taken over after a holder dies."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fs_platform.backfill.lease import Lease, LeaseStore, describe_self
from fs_platform.errors import BackfillError, LeaseHeldError, OnlineStoreUnavailable
from tests.backfill.conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.fixture
def store():
    client = redis.Redis.from_url(REDIS_URL)
    namespace = f"bftest{uuid.uuid4().hex[:8]}:p:"
    yield LeaseStore(client, namespace, ttl_seconds=1.0), namespace
    for key in client.scan_iter(match=namespace + "*"):
        client.delete(key)


def test_second_acquire_is_refused_naming_the_holder_and_release_frees_it(store):
    leases, _ = store
    holder = describe_self("run1")
    with leases.acquire("v", holder):
        with pytest.raises(LeaseHeldError, match="run run1"):
            leases.acquire("v", describe_self("run2"))
        assert leases.holder("v").holder == holder
        time.sleep(1.5)  # longer than the TTL: the heartbeat keeps it
        assert leases.holder("v").holder == holder
    assert leases.holder("v") is None
    leases.acquire("v", "next").release()


def test_a_dead_holder_on_another_host_blocks_only_until_its_lease_expires(store):
    """Nothing here can prove a holder on another host dead: its lease is taken once it expires."""
    import json

    leases, namespace = store
    record = {
        "holder": "doomed-holder",
        "token": "t",
        "host": "elsewhere",
        "boot": "b",
        "pidns": "p",
        "pid": 1,
        "start": 1,
    }
    leases._client.set(leases.key("v"), json.dumps(record), px=1000)  # as it left it, then died
    with pytest.raises(LeaseHeldError, match="doomed-holder"):
        leases.acquire("v", "me")
    deadline = time.monotonic() + 5
    while True:
        try:
            lease = leases.acquire("v", "me")
            break
        except LeaseHeldError:
            assert time.monotonic() < deadline, "expired lease was never taken over"
            time.sleep(0.1)
    assert leases.holder("v").holder == "me"
    lease.release()


def _unreachable_store() -> LeaseStore:
    # A real client to a port nothing listens on (connection refused at once), no retries.
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    return LeaseStore(client, "bftest-unreachable:p:", ttl_seconds=0.3)


def test_unreachable_redis_is_online_store_unavailable():
    leases = _unreachable_store()
    with pytest.raises(OnlineStoreUnavailable, match="unreachable"):
        leases.acquire("v", describe_self("run1"))
    with pytest.raises(OnlineStoreUnavailable):
        leases.holder("v")


def test_heartbeats_failing_longer_than_the_ttl_lose_the_lease():
    lease = Lease(_unreachable_store(), "v", "me", "token")  # as if acquired just before Redis went away
    try:
        with pytest.raises(BackfillError, match="cannot confirm the lease"):
            lease.check()  # ownership cannot be confirmed: no commit
        deadline = time.monotonic() + 5
        while lease._lost is None:
            assert time.monotonic() < deadline, "failing heartbeats never gave the lease up"
            time.sleep(0.05)
        with pytest.raises(BackfillError, match="heartbeats failed"):
            lease.check()
    finally:
        lease.release()


def test_check_catches_a_takeover_the_heartbeat_has_not_seen_yet(store):
    """A holder paused for longer than the TTL (or whose heartbeats failed) must not commit once
    another run holds the lease, even before its heartbeat thread notices."""
    leases, _ = store
    lease = leases.acquire("v", "paused-holder")
    try:
        lease.check()  # ours: passes
        lease._stop.set()  # as if paused: no more heartbeats
        lease._thread.join()
        leases._client.delete(leases.key("v"))  # expired ...
        other = leases.acquire("v", "new-holder")  # ... and taken over
        with pytest.raises(BackfillError, match="another run took it over"):
            lease.check()
        assert leases.holder("v").holder == "new-holder"  # the check did not steal it back
        other.release()
    finally:
        lease.release()


def _documented_tenant_commands() -> list[str]:
    """The commands `fs tenant acl NAME --role write` grants (docs/online_store.md, Tenancy)."""
    from fs_platform.plugins.redis_store.acl import ROLES

    return list(ROLES["write"])


def test_leases_work_for_a_user_with_the_documented_tenant_acl():
    admin = redis.Redis.from_url(REDIS_URL)
    suffix = uuid.uuid4().hex[:8]
    user, prefix, password = f"fs_test_lease_{suffix}", f"bftest{suffix}", uuid.uuid4().hex
    commands = _documented_tenant_commands()
    assert {"+pttl", "+pexpire", "+del"} <= set(commands)
    admin.execute_command(
        "ACL",
        "SETUSER",
        user,
        "reset",
        "on",
        f">{password}",
        f"~{prefix}:*",
        "resetchannels",
        "-@all",
        *commands,
    )
    client = redis.Redis.from_url(REDIS_URL, username=user, password=password)
    try:
        leases = LeaseStore(client, f"{prefix}:proj:", ttl_seconds=1.0)
        with leases.acquire("v", "tenant-run"):
            time.sleep(0.5)  # at least one heartbeat (PEXPIRE) under the ACL
            info = leases.holder("v")  # GET + PTTL
            assert info.holder == "tenant-run" and 0 < info.ttl_ms <= 1000
        assert leases.holder("v") is None  # released (DEL)
    finally:
        client.close()
        admin.execute_command("ACL", "DELUSER", user)
        for key in admin.scan_iter(match=f"{prefix}:*"):
            admin.unlink(key)


# -- #21.11: a dead holder on this host is taken over at once; anything else waits for the TTL --------

_HOLDS = """
import sys, time, redis
from fs_platform.backfill.lease import LeaseStore
store = LeaseStore(redis.Redis.from_url(sys.argv[1]), sys.argv[2], ttl_seconds=float(sys.argv[3]))
leases = [store.acquire(v, "doomed-holder") for v in sys.argv[4:]]
print("held", flush=True)
if sys.argv[4] != "commit":
    time.sleep(600)
from fs_platform.errors import BackfillError
while True:  # a run's chunk loop: confirm the lease, then commit
    try:
        leases[0].check()
    except BackfillError:
        print("lost", flush=True)
        break
    print("commit", flush=True)
    time.sleep(0.3)
"""


def _holder(namespace: str, ttl: float, *views: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDS, REDIS_URL, namespace, str(ttl), *views],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _timed_acquire(leases: LeaseStore, view: str) -> tuple[Lease, float]:
    started = time.monotonic()
    lease = leases.acquire(view, "resumer")
    return lease, time.monotonic() - started


def test_a_holder_killed_on_this_host_is_taken_over_at_once(store):
    leases, namespace = store
    proc = _holder(namespace, 60.0, "v", "w")  # a minute-long TTL: only proof of death can explain a takeover
    try:
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0] != "Z":  # killed, not reaped yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        zombie, took = _timed_acquire(leases, "w")  # a zombie is dead
        assert took < 1.0 and leases.holder("w").holder == "resumer"
        proc.wait()  # reaped: the pid is gone
        gone, took = _timed_acquire(leases, "v")
        assert took < 1.0 and leases.holder("v").holder == "resumer"
        assert leases.holder("v").ttl_ms > 500  # our lease, with the store's TTL
        zombie.release()
        gone.release()
    finally:
        proc.kill()
        proc.wait()


def test_a_live_stalled_or_foreign_holder_is_never_taken_over_early(store):
    import json

    from fs_platform.backfill.lease import _this_process

    leases, namespace = store
    proc = _holder(namespace, 60.0, "v")
    try:
        with pytest.raises(LeaseHeldError, match="doomed-holder"):
            leases.acquire("v", "me")  # alive
        os.kill(proc.pid, signal.SIGSTOP)  # stalled: the process exists, it may still commit
        with pytest.raises(LeaseHeldError, match="doomed-holder"):
            leases.acquire("v", "me")
    finally:
        proc.kill()
        proc.wait()
    me = _this_process()
    forged = {
        "another host": {**me, "host": "elsewhere", "boot": "another-boot", "pid": proc.pid},
        "another container": {**me, "pidns": "pid:[1]", "pid": proc.pid},
        "an older lease": {},
    }
    for what, record in forged.items():
        leases._client.set(leases.key(what), json.dumps({"holder": what, "token": "t", **record}), px=60_000)
        with pytest.raises(LeaseHeldError, match=what):
            leases.acquire(what, "me")
    # The same host and pid, but a process started at another time: the pid was reused, the holder is gone.
    reused = {**me, "start": me["start"] - 1}
    leases._client.set(leases.key("reused"), json.dumps({"holder": "old", "token": "t", **reused}), px=60_000)
    leases.acquire("reused", "me").release()
    # ... and with the right start time it is this very process: alive.
    leases._client.set(leases.key("self"), json.dumps({"holder": "self", "token": "t", **me}), px=60_000)
    with pytest.raises(LeaseHeldError):
        leases.acquire("self", "me")


def test_the_default_ttl_takes_over_a_stalled_holder_in_seconds_and_it_never_commits_after(store):
    """The cross-host case (nothing proves the holder dead): a holder frozen mid-run (SIGSTOP) is
    taken over once its lease expires, within the default TTL; resumed, it stops before committing."""
    from fs_platform.backfill.settings import BackfillSettings

    leases, namespace = store
    ttl = BackfillSettings().lease_ttl_seconds
    assert ttl <= 15
    leases = LeaseStore(leases._client, namespace, ttl_seconds=ttl)
    proc = _holder(namespace, ttl, "commit")
    try:
        assert proc.stdout.readline().strip() == "commit"
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        while True:
            try:
                lease = leases.acquire("commit", "taker")
                break
            except LeaseHeldError:
                assert time.monotonic() - stopped < ttl + 2, "the stalled holder's lease never expired"
                time.sleep(0.1)
        waited = time.monotonic() - stopped
        assert waited <= ttl + 1
        lines_before = []
        os.kill(proc.pid, signal.SIGCONT)
        for line in proc.stdout:
            lines_before.append(line.strip())
            if line.strip() == "lost":
                break
        assert lines_before[-1] == "lost" and "commit" not in lines_before, lines_before
        assert leases.holder("commit").holder == "taker"
        lease.release()
    finally:
        proc.kill()
        proc.wait()
