"""Parity fixtures: real Delta tables (written by delta-rs, read by embedded Sail) and the machine's
Redis at 127.0.0.1:6379 under a unique key prefix per test, cleaned up afterwards.

One session repo holds the data and the registry; each test gets a ``Stores`` whose online store is a
fresh key prefix loaded with exactly what materialization would write (every offline row, through
the store's event-time-ordered batch write), so tests can damage it independently.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from feast import FeatureService, FeatureStore

from fs_platform import datagen
from fs_platform.config import load_config
from fs_platform.plugins.delta.engine import get_engine
from fs_platform.plugins.redis_store.reader import ViewRead, build_keys
from tests.conftest import copy_example_repo

REDIS_URL = "redis://127.0.0.1:6379/0"
VIEWS = ("merchant_risk_daily", "customer_profile", "last_payment")  # plain views: rows
AGGREGATION_VIEWS = ("customer_txn_aggregates",)  # tiles, rebuilt from the raw events
PREFIX_VAR = "FS_PARITY_TEST_PREFIX"

STORE_YAML = f"""\
project: paritytest
provider: local
registry:
  registry_type: file
  path: data/registry.db
  cache_ttl_seconds: 0
offline_store:
  type: fs_platform.plugins.delta.offline_store.DeltaOfflineStore
online_store:
  type: fs_platform.plugins.redis_store.online_store.RedisOnlineStore
  url: {REDIS_URL}
  key_prefix: ${{{PREFIX_VAR}:-paritybase}}
entity_key_serialization_version: 3
"""


@dataclass
class Stores:
    """A Feast store on a private key prefix plus helpers to damage its online side."""

    store: FeatureStore
    data: datagen.Dataset
    prefix: str

    @property
    def online(self):
        return self.store._get_provider().online_store

    def view(self, name: str):
        return self.store.get_feature_view(name)

    def key(self, view: str, **entity) -> str:
        state = self.online.state(self.store.config)
        read = ViewRead(state.layout, self.view(view), state.codec(self.view(view)), [])
        return build_keys(state.layout, [read], {k: [v] for k, v in entity.items()})[0]

    def write(self, view: str, frame) -> None:
        self.online.write_arrow(self.store.config, self.view(view), datagen.to_arrow(frame))

    def rebuild_tiles(self, view: str) -> None:
        """What `fs materialize` writes for an aggregation view: its tiles, rebuilt from Delta."""
        from fs_platform.backfill import online
        from fs_platform.backfill.model import Interval
        from fs_platform.timeutil import utcnow

        now = utcnow()
        pulled = online.rebuild_tiles(self.store, self.view(view), Interval(now - timedelta(days=2), now))
        online.write_tiles(self.store, self.view(view), pulled.data)

    def client(self) -> redis.Redis:
        return self.online.state(self.store.config).client


@pytest.fixture(scope="session")
def parity_repo(tmp_path_factory) -> tuple[Path, datagen.Dataset]:
    """The example repo with seeded Delta tables ending this hour and its views applied."""
    get_engine(None)  # start Sail once for the session
    repo = copy_example_repo(tmp_path_factory.mktemp("parity"))
    (repo / "feature_store.yaml").write_text(STORE_YAML)
    data = datagen.generate(seed=11, customers=300, merchants=30, days=3)
    datagen.write_tables(data, repo / "data")
    data.last_payment = last_payments(data.payments)
    from deltalake import write_deltalake

    write_deltalake(str(repo / "data" / "last_payment"), datagen.to_arrow(data.last_payment))
    sys.path.insert(0, str(repo))
    try:
        import features as defs
    finally:
        sys.path.remove(str(repo))
    sys.modules.pop("features", None)
    core = FeatureService(
        name="fraud_core",
        features=[
            defs.merchant_risk_daily,
            defs.customer_profile[["country", "kyc_level"]],
            defs.customer_txn_aggregates,
        ],
    )
    store = FeatureStore(config=load_config(repo), repo_path=str(repo))
    # The repo's on-demand view and feature services are left out: parity never reads them.
    store.apply(
        [
            defs.customer,
            defs.merchant,
            defs.merchant_risk_daily,
            defs.customer_profile,
            defs.customer_txn_aggregates,
            last_payment_view(defs),
            core,
        ]
    )
    return repo, data


def last_payments(payments):
    """Rows of ``last_payment``: every payment, created a second after its event."""
    rows = payments[["customer_id", "merchant_id", "amount", "event_timestamp"]].copy()
    rows["created_at"] = rows["event_timestamp"] + timedelta(seconds=1)
    return rows.reset_index(drop=True)


def last_payment_view(defs):
    """A plain stream-fed view (rows pushed online first, Delta after): the lag classes apply to it."""
    from feast import FeatureView, Field, PushSource
    from feast.types import Float64, Int64

    from fs_platform.plugins.delta import DeltaSource

    source = DeltaSource(
        name="last_payment_source",
        path="data/last_payment",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_at",
    )
    return FeatureView(
        name="last_payment",
        entities=[defs.customer],
        ttl=timedelta(days=1),
        schema=[Field(name="merchant_id", dtype=Int64), Field(name="amount", dtype=Float64)],
        source=PushSource(name="last_payment_push", batch_source=source),
        tags={"freshness_sla": "15m"},
    )


def _stores(repo: Path, data: datagen.Dataset, prefix: str) -> Stores:
    config = load_config(repo)  # key_prefix comes from $FS_PARITY_TEST_PREFIX
    assert config.online_store.key_prefix == prefix
    stores = Stores(FeatureStore(config=config, repo_path=str(repo)), data, prefix)
    for name in VIEWS:  # what materialization writes: every row, the newest event per key wins
        stores.write(name, getattr(data, name))
    for name in AGGREGATION_VIEWS:
        stores.rebuild_tiles(name)
    return stores


@pytest.fixture
def stores(parity_repo, monkeypatch) -> Stores:
    repo, data = parity_repo
    prefix = f"paritytest{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(PREFIX_VAR, prefix)  # the CLI (which reads feature_store.yaml) sees the same prefix
    s = _stores(repo, data, prefix)
    yield s
    s.online.teardown(s.store.config, [], [])


def newest(frame, key: str, value):
    """The newest row of one entity in a datagen table, as a one-row frame (dtypes kept)."""
    rows = frame[frame[key] == value].sort_values(["event_timestamp", "created_at"])
    return rows.iloc[[-1]].reset_index(drop=True)


def changed(row, **columns):
    """A copy of a one-row frame with some columns set."""
    out = row.copy()
    for name, value in columns.items():
        out[name] = [value]
    return out
