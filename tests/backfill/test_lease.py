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

from backfill.lease import Lease, LeaseStore, describe_self
from fs.errors import BackfillError, LeaseHeldError, OnlineStoreUnavailable
from tests.backfill.conftest import REDIS_URL

pytestmark = pytest.mark.redis

_HOLDER = """
import sys, time, redis
from backfill.lease import LeaseStore
store = LeaseStore(redis.Redis.from_url(sys.argv[1]), sys.argv[2], ttl_seconds=1.0)
store.acquire("v", "doomed-holder")
print("held", flush=True)
time.sleep(600)
"""


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


def test_a_killed_holder_blocks_only_until_its_lease_expires(store):
    leases, namespace = store
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, REDIS_URL, namespace], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
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
    finally:
        proc.kill()


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
    from plugins.redis_store.acl import ROLES

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
