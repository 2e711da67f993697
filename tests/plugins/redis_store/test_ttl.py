"""TTL means what it means offline: a row older than the view's ttl at read time is not served."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from tests.plugins.redis_store.conftest import raw_client

pytestmark = pytest.mark.redis


def pair_row(cid: int, mid: str, amount: float, event_ts: datetime):
    key = EntityKey(
        join_keys=["customer_id", "merchant_id"], entity_values=[Value(int64_val=cid), Value(string_val=mid)]
    )
    return key, {"amount": Value(double_val=amount)}, event_ts, None


def read_pair(repo, cid, mid):
    resp = repo.store.get_online_features(["pair:amount"], {"customer_id": [cid], "merchant_id": [mid]})
    return resp.to_dict()["amount"][0], resp.proto.results[-1].statuses[0]


def test_short_ttl_expires_reads_and_keys(repo, backend):
    """pair has ttl=2s: a row 1.5s old is served, then neither served nor kept."""
    client = raw_client(backend)
    now = datetime.now(UTC)
    res = repo.online_store.write_batch(
        repo.config, repo.pair, [pair_row(1, "m:{1}", 3.5, now - timedelta(seconds=1.5))]
    )
    assert res.written == 1
    assert read_pair(repo, 1, "m:{1}") == (3.5, FieldStatus.PRESENT)
    key = f"fs:{repo.project}:{{customer_id=1,merchant_id=m%3A%7B1%7D}}:pair"
    assert 0 < client.pttl(key) <= 600
    time.sleep(0.7)
    value, status = read_pair(repo, 1, "m:{1}")
    assert value is None and status in (FieldStatus.NOT_FOUND, FieldStatus.OUTSIDE_MAX_AGE)
    assert client.exists(key) == 0


def test_read_time_check_does_not_trust_key_expiry(repo, backend):
    """Even if the key outlives the ttl (clock skew, PERSIST), an old row is not served."""
    client = raw_client(backend)
    now = datetime.now(UTC)
    repo.online_store.write_batch(
        repo.config, repo.pair, [pair_row(2, "m2", 1.0, now - timedelta(seconds=1.8))]
    )
    key = f"fs:{repo.project}:{{customer_id=2,merchant_id=m2}}:pair"
    client.persist(key)
    time.sleep(0.3)
    assert read_pair(repo, 2, "m2") == (None, FieldStatus.OUTSIDE_MAX_AGE)


def test_expired_on_arrival_is_skipped(repo):
    old = datetime.now(UTC) - timedelta(seconds=10)
    res = repo.online_store.write_batch(repo.config, repo.pair, [pair_row(3, "m3", 1.0, old)])
    assert (res.written, res.skipped_expired) == (0, 1)


def test_no_ttl_means_no_expiry_and_views_expire_independently(repo, backend):
    client = raw_client(backend)
    repo.materialize()  # txn (ttl 1 day) and profile (no ttl) for customers 1..20
    ns = f"fs:{repo.project}:{{customer_id=1}}:"
    assert client.pttl(ns + "profile") == -1
    txn_ttl = client.pttl(ns + "txn")
    assert 0 < txn_ttl <= 86_400_000
    # a newer write to profile does not touch txn's lifetime
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=1)])
    repo.online_store.write_batch(
        repo.config, repo.profile, [(key, {"count": Value(int64_val=5)}, datetime.now(UTC), None)]
    )
    assert abs(client.pttl(ns + "txn") - txn_ttl) < 5_000
    assert client.pttl(ns + "profile") == -1


def test_a_negative_ttl_means_no_limit_as_offline(repo):
    """Feast accepts a negative ttl; offline treats it as none, so online does too (served, kept)."""
    import copy

    neg = copy.deepcopy(repo.profile)
    neg.ttl = timedelta(seconds=-5)
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=77)])
    month_ago = datetime.now(UTC) - timedelta(days=30)
    res = repo.online_store.write_batch(
        repo.config, neg, [(key, {"count": Value(int64_val=5)}, month_ago, None)]
    )
    assert res.written == 1
    [(event_ts, values)] = repo.online_store.online_read(repo.config, neg, [key], ["count"])
    assert values["count"].int64_val == 5 and event_ts is not None
