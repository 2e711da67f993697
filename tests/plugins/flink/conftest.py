"""Fixtures for the Flink engine: the Flink environment (``fs stream install-flink``; CI creates it), one
embedded broker per session (the ingestor tests' fixture), a repo copy with the example repo's
aggregation views (``tests.plugins.kafka_ingest.conftest.StreamRepo``) and a fast ``flink.yaml``."""

from __future__ import annotations

import pytest
import yaml

from fs_platform.plugins.flink.env import flink_python
from tests.plugins.kafka_ingest.conftest import StreamRepo, broker  # noqa: F401 (the session broker fixture)

# Checkpoint every second (a kill loses at most ~1 s of progress, replayed on restore), small batches.
FAST_FLINK = {"checkpoint_interval_ms": 1000, "bundle_ms": 100, "bundle_size": 2000}


def flink_installed() -> bool:
    return flink_python().is_file()


needs_flink = pytest.mark.skipif(not flink_installed(), reason="no Flink environment: run `fs stream install-flink`")


@pytest.fixture
def flink_repo(tmp_path, broker):  # noqa: F811
    repo = StreamRepo(tmp_path, broker, "redis://127.0.0.1:6379/0")
    (repo.path / "flink.yaml").write_text(yaml.safe_dump(FAST_FLINK))
    yield repo
    repo.platform.store.teardown()
