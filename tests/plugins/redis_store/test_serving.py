"""Same values through every door: FeatureStore, the HTTP feature server, Feast's stock Redis store,
and the embedded Valkey after a restart."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import redis
import yaml
from feast import FeatureStore, RepoConfig

from fs_platform.plugins.redis_store import embedded
from tests.plugins.redis_store.conftest import MACHINE_URL, NOW, Repo

pytestmark = pytest.mark.redis

FEATURES = [
    "txn:amount",
    "txn:count",
    "txn:country",
    "txn:ratio",
    "txn:flag",
    "txn:level",
    "txn:tags",
    "profile:count",
]
ROWS = {"customer_id": [1, 2, 7, 999]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_feature_server_returns_what_get_online_features_returns(tmp_path):
    """A real `feast serve` (async read path) over the same registry and Redis."""
    repo = Repo(tmp_path, {"url": MACHINE_URL})
    repo.materialize()
    expected = repo.store.get_online_features(FEATURES, ROWS, full_feature_names=True).to_dict()
    (repo.tmp / "feature_store.yaml").write_text(
        yaml.safe_dump(
            {
                "project": repo.project,
                "registry": str(repo.tmp / "registry.db"),
                "provider": "local",
                "online_store": repo.online,
                "offline_store": {"type": "file"},
                "entity_key_serialization_version": 3,
            }
        )
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "feast.cli.cli", "-c", str(repo.tmp), "serve", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        body = _post_when_up(
            f"http://127.0.0.1:{port}/get-online-features",
            {"features": FEATURES, "entities": ROWS, "full_feature_names": True},
            server,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        repo.close()
    names = body["metadata"]["feature_names"]
    got = {name: result["values"] for name, result in zip(names, body["results"], strict=True)}
    assert got == expected
    statuses = dict(zip(names, (r["statuses"] for r in body["results"]), strict=True))
    assert statuses["txn__amount"] == ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND"]


def _post_when_up(url: str, payload: dict, server: subprocess.Popen, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"feast serve did not answer: {server.stderr.read().decode()[-2000:]}"
                ) from None
            time.sleep(0.25)


def test_same_values_as_feast_stock_redis_store(tmp_path):
    ours = Repo(tmp_path / "ours", {"url": MACHINE_URL})
    try:
        ours.materialize()
        stock_config = RepoConfig(
            project=ours.project + "stock",
            registry=str(tmp_path / "stock.db"),
            provider="local",
            online_store={"type": "redis", "connection_string": "127.0.0.1:6379,db=9"},
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=str(tmp_path),
        )
        stock = FeatureStore(config=stock_config)
        stock.apply([ours.customer, ours.merchant, ours.txn, ours.profile])
        stock.materialize(NOW - timedelta(days=2), NOW + timedelta(seconds=1), ["txn", "profile"])
        features = FEATURES + ["txn:seen_at"]
        try:
            for with_ts in (False, True):
                assert ours.store.get_online_features(features, ROWS, True).to_dict(
                    with_ts
                ) == stock.get_online_features(features, ROWS, True).to_dict(with_ts)
        finally:
            stock.teardown()
    finally:
        ours.close()


def test_embedded_default_persists_across_restart(tmp_path):
    """No url: the store starts an embedded Valkey under <repo>/data/valkey and reuses it."""
    repo = Repo(tmp_path, {})
    data_dir = tmp_path / "data" / "valkey"
    try:
        repo.materialize()
        url = embedded.ensure_server(data_dir)  # a second "process" finds the running server
        assert redis.Redis.from_url(url).dbsize() > 0
        assert embedded.stop_server(data_dir)
        fresh = FeatureStore(config=repo.config)  # new store state: restarts the server from disk
        assert fresh.get_online_features(["profile:count"], {"customer_id": [4]}).to_dict()["count"] == [4]
    finally:
        repo.close()
        embedded.stop_server(data_dir)
