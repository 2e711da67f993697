"""Fixtures for backfill tests: real Delta tables, the embedded Sail Spark, the machine's Redis.

Each ``make_repo`` call is a private copy of feature_repo/ with its own seeded data, ledger and a
unique Redis key prefix (deleted afterwards), so tests never see each other's state.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import yaml

from fs import datagen
from fs.platform import Platform
from tests.conftest import copy_example_repo

REDIS_URL = "redis://127.0.0.1:6379/11"
# Online values must be younger than the views' ttl (1 day for customer_txn_aggregates) to be kept.
END = datagen.default_end()
SEED = 11


def write_data(repo: Path, days: int = 4, end=END) -> datagen.Dataset:
    data = datagen.generate(seed=SEED, customers=150, merchants=15, days=days, end=end)
    datagen.write_tables(data, repo / "data")
    return data


@pytest.fixture
def make_repo(tmp_path: Path):
    """``make_repo(name, lease_ttl=...) -> Platform`` on fresh data; Redis keys removed at teardown."""
    prefixes: list[str] = []

    def make(name: str = "a", lease_ttl: int = 5, days: int = 4, end=END) -> Platform:
        repo = copy_example_repo(tmp_path / name)
        prefix = f"bftest{uuid.uuid4().hex[:10]}"
        prefixes.append(prefix)
        config = yaml.safe_load((repo / "feature_store.yaml").read_text())
        config["online_store"].update(url=REDIS_URL, key_prefix=prefix)
        config["backfill"] = {"lease_ttl_seconds": lease_ttl}
        (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
        write_data(repo, days, end)
        platform = Platform(repo)
        apply_views(platform)
        return platform

    yield make
    client = redis.Redis.from_url(REDIS_URL)
    for prefix in prefixes:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.unlink(*keys)
    client.close()


def apply_views(platform: Platform) -> None:
    """Register entities, sources and feature views (what the backfill needs)."""
    contents = platform.definitions()
    platform.store.apply([*contents.entities, *contents.data_sources, *contents.feature_views])


def day_range(days: int = 2) -> tuple:
    """The last ``days`` whole UTC days before END, plus END's partial day."""
    start = (END - timedelta(days=days)).replace(hour=0)
    return start, END
