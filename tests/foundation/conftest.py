"""A demo-seeded copy of the example repo for CLI and README tests: small seeded data written as
`make demo` writes it (ending now), applied, online store on the machine's Redis under a unique
prefix (deleted afterwards). Built once per module: tests that write (materialize) say so."""

from __future__ import annotations

import contextlib
import uuid

import pytest
import yaml

from fs_platform import datagen
from fs_platform.platform import Platform
from tests.conftest import copy_example_repo, drop_prefix

REDIS_URL = "redis://127.0.0.1:6379/12"


@contextlib.contextmanager
def seeded_copy(root, customers: int = 40, merchants: int = 5, days: int = 3):
    """A copy of the example repo under ``root`` on seeded data, applied, on the machine's Redis under a
    unique prefix whose keys are deleted on exit."""
    repo = copy_example_repo(root)
    prefix = f"fstest{uuid.uuid4().hex[:10]}"
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["online_store"].update(url=REDIS_URL, key_prefix=prefix)
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    datagen.write_tables(
        datagen.generate(seed=7, customers=customers, merchants=merchants, days=days), repo / "data"
    )
    Platform(repo).apply()
    try:
        yield repo
    finally:
        drop_prefix(REDIS_URL, prefix)


@pytest.fixture(scope="module")
def seeded_repo(tmp_path_factory):
    with seeded_copy(tmp_path_factory.mktemp("seeded")) as repo:
        yield repo
