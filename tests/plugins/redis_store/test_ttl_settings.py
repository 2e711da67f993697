"""#14.3: the online TTL settings Feast users already have, beside fs's per-view rule.

- ``key_ttl_seconds`` (Feast's): every row key expires N seconds after its write (or earlier, at the
  view's ttl).
- ``enforce_view_ttl`` (default on): values older than the view's ttl are hidden at read time; off is
  Feast's behaviour (served whatever their age), for every read path: Feast's API and FastReader/fs serve.

The machine's Redis (db 9), a unique project per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from fs_platform.plugins.redis_store.fast_read import FastReader
from fs_platform.plugins.redis_store.online_store import RedisOnlineStoreConfig
from fs_platform.plugins.redis_store.writer import WriteResult
from tests.plugins.redis_store.conftest import MACHINE_URL, Repo, raw_client
from tests.plugins.serving.asgi import request
from tests.plugins.serving.conftest import make_app

pytestmark = pytest.mark.redis


def _row(cid: int, count: int, event_ts: datetime):
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=cid)])
    return key, {"count": Value(int64_val=count)}, event_ts, None


def _key(repo: Repo, cid: int, view: str) -> str:
    return f"fs:{repo.project}:{{customer_id={cid}}}:{view}"


@pytest.fixture
def make_repo(tmp_path):
    repos = []

    def make(**settings) -> Repo:
        r = Repo(tmp_path / f"r{len(repos)}", {"url": MACHINE_URL, **settings})
        repos.append(r)
        return r

    yield make
    for r in repos:
        r.close()


def test_key_ttl_seconds_is_accepted_and_expires_every_key_after_the_write(make_repo):
    assert RedisOnlineStoreConfig(key_ttl_seconds=30).key_ttl_seconds == 30
    with pytest.raises(ValueError):
        RedisOnlineStoreConfig(key_ttl_seconds=-1)
    repo = make_repo(key_ttl_seconds=30)
    client = raw_client({"url": MACHINE_URL})
    now = datetime.now(UTC)
    # profile has no ttl: the key expires 30 s after the write (Feast's meaning)
    assert repo.online_store.write_batch(
        repo.config, repo.profile, [_row(1, 10, now - timedelta(days=3))]
    ).written
    assert 28_000 < client.pttl(_key(repo, 1, "profile")) <= 30_000
    # txn's ttl (1 day) ends later than 30 s from now: the earlier of the two wins
    repo.online_store.write_batch(repo.config, repo.txn, [_row(2, 20, now)])
    assert 28_000 < client.pttl(_key(repo, 2, "txn")) <= 30_000
    # ... and a view ttl that ends first still decides (a txn row 1 day minus 10 s old)
    repo.online_store.write_batch(repo.config, repo.txn, [_row(3, 21, now - timedelta(days=1, seconds=-10))])
    assert 0 < client.pttl(_key(repo, 3, "txn")) <= 10_000
    # values are served as before
    got = repo.store.get_online_features(["profile:count"], [{"customer_id": 1}]).to_dict()
    assert got["count"] == [10]


def test_view_ttl_hides_old_values_by_default(make_repo):
    repo = make_repo()
    now = datetime.now(UTC)
    result = repo.online_store.write_batch(repo.config, repo.txn, [_row(1, 10, now - timedelta(days=2))])
    assert result == WriteResult(0, 0, 1)  # older than the 1-day ttl: never served, so not written
    repo.online_store.write_batch(repo.config, repo.txn, [_row(2, 20, now - timedelta(hours=23, minutes=59))])
    got = repo.store.get_online_features(["txn:count"], [{"customer_id": 2}])
    assert got.to_dict()["count"] == [20]
    assert 0 < raw_client({"url": MACHINE_URL}).pttl(_key(repo, 2, "txn")) <= 60_000


def test_enforce_view_ttl_off_serves_values_whatever_their_age(make_repo):
    """Feast's behaviour: nothing is hidden, skipped or expired by the view's ttl, in every read path."""
    repo = make_repo(enforce_view_ttl=False)
    client = raw_client({"url": MACHINE_URL})
    now = datetime.now(UTC)
    result = repo.online_store.write_batch(repo.config, repo.txn, [_row(1, 10, now - timedelta(days=2))])
    assert result == WriteResult(1, 0, 0)
    assert client.pttl(_key(repo, 1, "txn")) == -1  # no expiry
    got = repo.store.get_online_features(["txn:count"], [{"customer_id": 1}])
    assert got.to_dict()["count"] == [10]
    assert got.proto.results[-1].statuses[0] == FieldStatus.PRESENT
    reader = FastReader(repo.store, ["txn:count"])  # the fs serve path
    assert reader.read({"customer_id": [1]}) == {"count": [10]}
    served = reader.serve({"customer_id": [1]})
    assert served.statuses[-1] in (None, [FieldStatus.PRESENT])
    status, _, body = request(
        make_app(repo.store),
        "POST",
        "/get-online-features",
        {"features": ["txn:count"], "entities": {"customer_id": [1]}},
    )
    assert status == 200 and body["results"][-1]["values"] == [10], body
    assert body["results"][-1]["statuses"] == ["PRESENT"]


def test_fs_serve_hides_old_values_by_default(make_repo):
    repo = make_repo()
    now = datetime.now(UTC)
    repo.online_store.write_batch(repo.config, repo.txn, [_row(1, 10, now - timedelta(hours=1))])
    key = _key(repo, 1, "txn")
    client = raw_client({"url": MACHINE_URL})
    stored = client.get(key)
    # the same row, its event time rewritten to 2 days ago and its expiry removed: held, past the ttl
    old_us = int((now - timedelta(days=2)).timestamp() * 1_000_000)
    client.set(key, b"[" + str(old_us).encode() + b"," + stored.split(b",", 1)[1])
    status, _, body = request(
        make_app(repo.store),
        "POST",
        "/get-online-features",
        {"features": ["txn:count"], "entities": {"customer_id": [1]}},
    )
    assert status == 200 and body["results"][-1]["values"] == [None], body
    assert body["results"][-1]["statuses"] == ["OUTSIDE_MAX_AGE"]
