"""Leases on the machine's Redis: exclusive, named holder, taken over after a holder dies."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis

from backfill.lease import LeaseStore, describe_self
from fs.errors import LeaseHeldError
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
