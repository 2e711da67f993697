"""A backfill killed mid-run (SIGKILL) and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from backfill.model import Status, Target
from backfill.runner import Backfiller
from cli.main import app
from fs.errors import LeaseHeldError
from tests.backfill.conftest import day_range
from tests.backfill.test_runner import VIEW, offline_rows, online_values

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SLOW_CHECK = """
import os, time
from backfill.validation import ChunkCheck

# Test hook: slows each chunk so the test can kill the run between chunks.
slow = ChunkCheck(lambda view, interval, data: time.sleep(float(os.environ.get("FS_TEST_CHUNK_SLEEP", "0"))) or True,
                  mode="warn", name="slow")
"""


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_killed_backfill_resumes_to_the_same_tables_as_an_uninterrupted_run(make_repo):
    killed, reference = make_repo("killed", lease_ttl=5), make_repo("reference")
    start, end = day_range(1)
    args = ["--start", start.isoformat(), "--end", end.isoformat(), "--to", "both", "--chunk", "6h"]
    with open(killed.repo_path / "backfills.py", "a") as fh:
        fh.write(SLOW_CHECK)
    env = {**os.environ, "FS_TEST_CHUNK_SLEEP": "1.0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--repo", str(killed.repo_path), "backfill", VIEW, *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    bf = Backfiller(killed)
    try:
        done = lambda: sum(e.status == Status.DONE for e in bf.ledger.latest(VIEW, Target.OFFLINE))  # noqa: E731
        _wait(lambda: done() >= 2 or proc.poll() is not None, 120, "two committed chunks")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    plan = bf.plan(VIEW, start, end, to="both", chunk=timedelta(hours=6), resume=True)
    assert 0 < len(plan.to_run) < len(plan.chunks)
    assert any(e.status == Status.RUNNING for e in bf.ledger.status(VIEW, Target.ONLINE).pending + bf.ledger.status(VIEW, Target.OFFLINE).pending)  # fmt: skip
    # The dead run's lease blocks until it expires (5 s here), then the resume takes over.
    with pytest.raises(LeaseHeldError):
        bf.run(plan)
    _wait(lambda: bf.leases.holder(VIEW) is None, 10, "the dead run's lease to expire")
    assert bf.run(plan).ok

    ref = Backfiller(reference)
    assert ref.run(ref.plan(VIEW, start, end, to="both", chunk=timedelta(hours=6))).ok
    assert offline_rows(killed).equals(offline_rows(reference))
    customers = range(1, 151)
    assert online_values(killed, customers) == online_values(reference, customers)
    assert bf.ledger.status(VIEW, Target.OFFLINE).pending == ()


def test_cli_dry_run_json_status_and_default_run_command(make_repo):
    platform = make_repo()
    start, end = day_range(1)
    runner = CliRunner()
    base = ["--repo", str(platform.repo_path)]
    dry = runner.invoke(app, [*base, "--json", "backfill", VIEW, "--start", start.isoformat(), "--end",
                              end.isoformat(), "--dry-run"])  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert '"will_run": true' in dry.output and '"estimated_rows"' in dry.output
    assert Backfiller(platform).ledger.entries() == []
    ran = runner.invoke(app, [*base, "backfill", "run", VIEW, "--start", start.isoformat(), "--end",
                              end.isoformat(), "--to", "offline", "--json"])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert '"ok": true' in ran.output
    status = runner.invoke(app, [*base, "backfill", "status", VIEW, "--json"])
    assert status.exit_code == 0 and '"target": "offline"' in status.output
    bad = runner.invoke(app, [*base, "backfill", VIEW, "--start", "2026-11-02", "--end", "2026-11-01"])
    assert bad.exit_code != 0
