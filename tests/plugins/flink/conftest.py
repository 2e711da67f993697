"""Fixtures for the Flink engine: the Flink environment (``fs stream install-flink``; CI creates it), one
embedded broker per session (the ingestor tests' fixture), a repo copy with the example repo's
aggregation views (``tests.plugins.kafka_ingest.conftest.StreamRepo``) and a fast ``flink.yaml``."""

from __future__ import annotations

import time

import pytest
import yaml

from fs_platform.plugins.flink import load_flink_settings, run_flink
from fs_platform.plugins.flink.env import flink_python
from tests.plugins.kafka_ingest.conftest import StreamRepo, broker, online_mismatches  # noqa: F401 (broker: the session fixture)

# Checkpoint every second (a kill loses at most ~1 s of progress, replayed on restore), small batches.
FAST_FLINK = {"checkpoint_interval_ms": 1000, "bundle_ms": 100, "bundle_size": 2000}


def flink_installed() -> bool:
    return flink_python().is_file()


needs_flink = pytest.mark.skipif(
    not flink_installed(), reason="no Flink environment: run `fs stream install-flink`"
)


@pytest.fixture
def flink_repo(tmp_path, broker):  # noqa: F811
    repo = StreamRepo(tmp_path, broker, "redis://127.0.0.1:6379/0")
    (repo.path / "flink.yaml").write_text(yaml.safe_dump(FAST_FLINK))
    yield repo
    repo.platform.store.teardown()


def start(repo, tmp_path, **kw):
    return run_flink(
        repo.platform, repo.config(), load_flink_settings(repo.path), log_path=tmp_path / "job.log", **kw
    )


def converge(repo, job, events, timeout=120.0):
    """Wait until every online value equals the reference over ``events`` (never, if one was lost or
    counted twice)."""
    deadline = time.monotonic() + timeout
    while True:
        mismatches = online_mismatches(repo, events)
        if not mismatches:
            return
        assert job.process.poll() is None, (
            f"the job process ended (exit {job.process.returncode}); see job.log"
        )
        assert time.monotonic() < deadline, f"{len(mismatches)} values still differ: {mismatches[:5]}"
        time.sleep(1.0)
