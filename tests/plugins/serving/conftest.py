"""Fixtures for fs serve: the redis_store test repo (many value types, an ODFV, a two-key view) on the
machine's Redis, an aggregation view with an ODFV over it, and a private redis-server to stop, hang and
restart."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from feast import Entity, FeatureService, FeatureStore, Field, RepoConfig, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feast.value_type import ValueType

from fs_platform.aggregation import Aggregation
from fs_platform.plugins.serving.app import ServeApp
from fs_platform.plugins.serving.settings import ServeSettings
from tests.aggregation.views import events_view
from tests.plugins.redis_store.conftest import MACHINE_URL, STORE_TYPE, Repo

__all__ = ["MACHINE_URL"]


@pytest.fixture
def repo(tmp_path):
    r = Repo(tmp_path, {"url": MACHINE_URL})
    r.materialize()
    r.store.apply(
        [FeatureService(name="scoring", features=[r.txn[["amount", "tags"]], r.profile[["count"]], r.odfv])]
    )
    yield r
    r.close()


def make_app(store, **settings) -> ServeApp:
    # A loaded 2-core CI machine can take longer than the production deadline on a cold first read;
    # tests that exercise the deadline pass their own.
    settings.setdefault("deadline_ms", 5000.0)
    app = ServeApp(store, ServeSettings(**settings))
    app.warm()
    return app


class AggRepo:
    """An aggregation view (count/sum/mean over 10m/1h) + an ODFV dividing a request amount by the mean."""

    def __init__(self, tmp):
        self.project = "t" + uuid.uuid4().hex[:10]
        customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
        self.view = events_view(
            [
                Aggregation("*", "count", ["10m", "1h"], name="n"),
                Aggregation("amount", "sum", ["1h"]),
                Aggregation("amount", "mean", ["1h"]),
            ]
        )
        request = RequestSource(name="payment", schema=[Field(name="amount", dtype=Float64)])

        @on_demand_feature_view(sources=[self.view, request], schema=[Field(name="vs_mean", dtype=Float64)])
        def vs_mean(inputs: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"vs_mean": inputs["amount"] / inputs["amount_mean_1h"]})

        self.config = RepoConfig(
            project=self.project,
            registry=str(tmp / "registry.db"),
            provider="local",
            online_store={"type": STORE_TYPE, "url": MACHINE_URL},
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=str(tmp),
        )
        self.store = FeatureStore(config=self.config)
        self.store.apply([customer, self.view, vs_mean])
        now = datetime.now(UTC)
        rows = [(1, 30, 10.0), (1, 300, 30.0), (1, 2000, 5.0), (2, 100, 7.5)]
        events = pa.table(
            {
                "customer_id": pa.array([r[0] for r in rows], pa.int64()),
                "amount": pa.array([r[2] for r in rows], pa.float64()),
                "approved": pa.array([True] * len(rows)),
                "event_timestamp": pa.array(
                    [now - timedelta(seconds=r[1]) for r in rows], pa.timestamp("us", tz="UTC")
                ),
            }
        )
        online = self.store._get_provider().online_store
        online.write_events(
            self.config, self.view, events, ["t/0"] * len(rows), np.arange(len(rows)), "event_timestamp"
        )


@pytest.fixture
def agg_repo(tmp_path):
    r = AggRepo(tmp_path)
    yield r
    r.store.teardown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of our own, to stop, hang (SIGSTOP) and restart without touching the machine's."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    port = free_port()
    cmd = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        proc = None

        def start(self):
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(port=port).ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

        def stop(self):
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)

    server = Server()
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


@pytest.fixture
def store_on(repo):
    """The repo's registry with the online store pointed at another Redis URL."""

    def make(url: str) -> FeatureStore:
        online = {**repo.online, "url": url, "socket_timeout_s": 1.0, "connect_timeout_s": 1.0}
        c = repo.config
        return FeatureStore(
            config=RepoConfig(
                project=c.project,
                registry=str(repo.tmp / "registry.db"),
                provider="local",
                online_store=online,
                offline_store={"type": "file"},
                entity_key_serialization_version=3,
                repo_path=str(repo.tmp),
            )
        )

    return make
