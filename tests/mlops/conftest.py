"""Fixtures for the MLOps tests (issue #18): one applied repo copy per test module on small seeded
Delta data (embedded Sail), the machine's Redis under a unique key prefix, and a real MLflow file
store in a temp folder."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from fs_platform import datagen
from tests.conftest import copy_example_repo, drop_prefix

REDIS_URL = "redis://127.0.0.1:6379/11"


def seeded_repo(base: Path, envs: dict[str, dict] | None = None) -> tuple[Path, datagen.Dataset, str]:
    """A private feature_repo copy on fresh data (not applied); ``envs`` replaces its overlays."""
    repo = copy_example_repo(base)
    prefix = f"mltest{uuid.uuid4().hex[:10]}"
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["online_store"].update(url=REDIS_URL, key_prefix=prefix)
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    for name, overlay in (envs or {}).items():
        (repo / "envs" / f"{name}.yaml").write_text(yaml.safe_dump(overlay))
    data = datagen.generate(seed=7, customers=30, merchants=5, days=2)
    datagen.write_tables(data, repo / "data")
    return repo, data, prefix


def drop_keys(prefix: str) -> None:
    drop_prefix(REDIS_URL, prefix)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """``MLFLOW_TRACKING_URI`` at a fresh file store for the module (and the flag MLflow 3 needs for it)."""
    uri = (tmp_path_factory.mktemp("mlruns") / "mlruns").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        yield uri
