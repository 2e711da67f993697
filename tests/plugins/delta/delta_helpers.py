"""Helpers shared by the Delta store tests (a uniquely named module: every area has a conftest)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake
from feast.repo_config import RegistryConfig, RepoConfig

from fs_platform.plugins.delta.offline_store import DeltaOfflineStoreConfig


def make_config(repo: Path, project: str = "delta_test", online: dict | None = None) -> RepoConfig:
    repo.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=project,
        provider="local",
        registry=RegistryConfig(path=str(repo / "registry.db"), cache_ttl_seconds=0),
        offline_store=DeltaOfflineStoreConfig(),
        online_store=online or {"type": "sqlite", "path": str(repo / "online.db")},
        repo_path=repo,
        entity_key_serialization_version=3,
    )


def redis_delta_store(repo: Path, redis_url: str, project: str | None = None):
    """A FeatureStore on the Delta offline store, fs's Redis online store at ``redis_url`` and the Arrow
    engine (fs's materialization), with a unique project unless one is given."""
    import uuid

    from feast import FeatureStore

    config = RepoConfig(
        project=project or "t" + uuid.uuid4().hex[:10],
        provider="local",
        registry={"path": str(repo / "registry.db"), "cache_ttl_seconds": 0},
        offline_store={"type": "fs_platform.plugins.delta.offline_store.DeltaOfflineStore"},
        online_store={
            "type": "fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
            "url": redis_url,
        },
        batch_engine={"type": "fs_platform.plugins.redis_store.engine.RedisArrowEngine"},
        repo_path=str(repo),
        entity_key_serialization_version=3,
    )
    return FeatureStore(config=config)


def write_table(path: Path | str, df: pd.DataFrame, mode: str = "overwrite") -> None:
    """Write a Delta table with microsecond UTC timestamps (what Spark can read)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    columns = [
        c.cast(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(c.type) else c for c in table.columns
    ]
    table = pa.table(columns, names=table.column_names)
    write_deltalake(str(path), table, mode=mode, schema_mode="overwrite" if mode == "overwrite" else None)
