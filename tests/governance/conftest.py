"""Governance fixtures: one private copy of the example repo per session, on real Delta tables and
the machine's Redis (unique project + key prefix, deleted afterwards). Sharing it keeps the one
Great Expectations context (slow to import) and the registry warm across the area's tests.

The copy also holds the test-only plain view ``customer_txn_rolling`` (tests/rolling_view.py): per
payment rows in its own Delta table, never materialized here. Validation and drift work on stored
rows, which the repo's aggregation views do not have."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
import yaml
from deltalake import DeltaTable

from fs_platform import datagen
from fs_platform.platform import Platform
from tests.conftest import copy_example_repo
from tests.rolling_view import ROLLING_VIEW, add_rolling_view, write_rolling_table

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def gov(tmp_path_factory):
    """A ``Platform`` on a fresh example repo: 6 days of data, the batch views materialized online.
    ``platform.rolling`` holds ``customer_txn_rolling``'s rows (pandas)."""
    repo = copy_example_repo(tmp_path_factory.mktemp("gov"))
    add_rolling_view(repo)
    tag = uuid.uuid4().hex[:8]
    cfg = yaml.safe_load((repo / "feature_store.yaml").read_text())
    cfg["project"] = f"gov{tag}"
    cfg["online_store"] = {
        "type": "fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
        "url": REDIS_URL,
        "key_prefix": f"govtest{tag}",
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(cfg))

    data = datagen.generate(seed=11, customers=300, merchants=30, days=6)
    datagen.write_tables(data, repo / "data")
    write_rolling_table(repo, data)
    platform = Platform(repo)
    platform.apply()
    end = datagen.default_end() + timedelta(seconds=1)
    platform.store.materialize(
        end - timedelta(days=7), end, feature_views=["customer_profile", "merchant_risk_daily"]
    )
    platform.data = data
    platform.rolling = DeltaTable(str(repo / "data" / ROLLING_VIEW)).to_pandas()
    yield platform
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"govtest{tag}:*", count=1000):
        client.unlink(key)
