"""Fixtures for backfill tests: real Delta tables, the embedded Sail Spark, the machine's Redis.

Each ``make_repo`` call is a private copy of feature_repo/ with its own seeded data, ledger and a
unique Redis key prefix (deleted afterwards), so tests never see each other's state.

The copy also gets the test-only plain view ``customer_txn_rolling`` (tests/rolling_view.py), stored in
its own Delta table and recomputed by a Python batch definition over the raw payments: the example
repo's own views are a SQL-defined batch view (merchant_risk_daily) and aggregation views, which have
no stored rows to recompute, so the runner's Python-definition path is exercised through this one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from fs_platform import datagen
from fs_platform.platform import Platform
from tests.conftest import copy_example_repo, drop_prefix
from tests.rolling_view import ROLLING_RETURN, ROLLING_VIEW, add_rolling_view, write_rolling_table

__all__ = ["ROLLING_RETURN", "ROLLING_VIEW"]  # re-exported for the tests

REDIS_URL = "redis://127.0.0.1:6379/11"
# Online values must be younger than the views' ttl (1 day for customer_txn_rolling) to be kept.
# END's day must be partial (the tests count its chunk): at 00:xx UTC step back one hour.
END = datagen.default_end()
if END.hour == 0:
    END -= timedelta(hours=1)
SEED = 11


def write_data(repo: Path, days: int = 4, end=END) -> datagen.Dataset:
    """Seeded example data, plus ``customer_txn_rolling``'s table computed by its own definition."""
    data = datagen.generate(seed=SEED, customers=150, merchants=15, days=days, end=end)
    datagen.write_tables(data, repo / "data")
    write_rolling_table(repo, data)
    return data


@pytest.fixture
def make_repo(tmp_path: Path):
    """``make_repo(name, lease_ttl=...) -> Platform`` on fresh data (``platform.data``: the generated
    Dataset); Redis keys removed at teardown."""
    prefixes: list[str] = []

    def make(name: str = "a", lease_ttl: int = 5, days: int = 4, end=END) -> Platform:
        repo = copy_example_repo(tmp_path / name)
        add_rolling_view(repo)
        prefix = f"bftest{uuid.uuid4().hex[:10]}"
        prefixes.append(prefix)
        config = yaml.safe_load((repo / "feature_store.yaml").read_text())
        config["online_store"].update(url=REDIS_URL, key_prefix=prefix)
        config["backfill"] = {"lease_ttl_seconds": lease_ttl}
        (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
        data = write_data(repo, days, end)
        platform = Platform(repo)
        apply_views(platform)
        platform.data = data  # the generated Dataset (payments, ...)
        return platform

    yield make
    drop_prefix(REDIS_URL, *prefixes)


def apply_views(platform: Platform) -> None:
    """Register entities, sources and feature views (what the backfill needs)."""
    contents = platform.definitions()
    platform.store.apply([*contents.entities, *contents.data_sources, *contents.feature_views])


def day_range(days: int = 2) -> tuple:
    """The last ``days`` whole UTC days before END, plus END's partial day."""
    start = (END - timedelta(days=days)).replace(hour=0)
    return start, END


SLOW_CHECK = """
import os, time
from fs_platform.backfill.validation import ChunkCheck

# Test hook: slows each chunk so the test can kill the run between chunks.
slow = ChunkCheck(
    lambda view, interval, data: time.sleep(float(os.environ.get("FS_TEST_CHUNK_SLEEP", "0"))) or True,
    mode="warn",
    name="slow",
)
"""


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def kill_mid_run(platform: Platform, view: str, args: list[str], committed: int = 2) -> None:
    """Run ``fs backfill VIEW ARGS`` in a subprocess (each chunk check sleeps 1 s) and SIGKILL it
    once the ledger records ``committed`` offline chunks as done."""
    from fs_platform.backfill.model import Status, Target
    from fs_platform.backfill.runner import Backfiller

    with open(platform.repo_path / "backfills.py", "a") as fh:
        fh.write(SLOW_CHECK)
    env = {**os.environ, "FS_TEST_CHUNK_SLEEP": "1.0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fs_platform.cli.main",
            "--repo",
            str(platform.repo_path),
            "backfill",
            view,
            *args,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ledger = Backfiller(platform).ledger
    try:
        done = lambda: sum(e.status == Status.DONE for e in ledger.latest(view, Target.OFFLINE))  # noqa: E731
        wait_for(lambda: done() >= committed or proc.poll() is not None, 120, f"{committed} committed chunks")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
