"""A backfill killed mid-run (SIGKILL) and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from fs_platform.backfill.model import Status, Target
from fs_platform.backfill.runner import Backfiller
from fs_platform.cli.main import app
from tests.backfill.conftest import day_range, kill_mid_run
from tests.backfill.test_runner import VIEW, offline_rows, online_values

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_killed_backfill_resumes_to_the_same_tables_as_an_uninterrupted_run(make_repo):
    # A minute-long lease TTL: the resume below must not wait for it (#21.11).
    killed, reference = make_repo("killed", lease_ttl=60), make_repo("reference")
    start, end = day_range(1)
    args = ["--start", start.isoformat(), "--end", end.isoformat(), "--to", "both", "--chunk", "6h"]
    kill_mid_run(killed, VIEW, args)
    bf = Backfiller(killed)
    plan = bf.plan(VIEW, start, end, to="both", chunk=timedelta(hours=6), resume=True)
    assert 0 < len(plan.to_run) < len(plan.chunks)
    assert any(
        e.status == Status.RUNNING
        for e in bf.ledger.status(VIEW, Target.ONLINE).pending
        + bf.ledger.status(VIEW, Target.OFFLINE).pending
    )
    # The dead run's lease is still there, but its process is provably gone (same host, pid gone):
    # the resume takes it over at once instead of waiting for it to expire.
    assert "pid" in bf.leases.holder(VIEW).holder and bf.leases.holder(VIEW).ttl_ms > 30_000
    started = time.monotonic()
    lease = bf.leases.acquire(VIEW, "resume")
    assert time.monotonic() - started < 1.0
    lease.release()
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
    dry = runner.invoke(
        app,
        [
            *base,
            "--json",
            "backfill",
            VIEW,
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
            "--dry-run",
        ],
    )
    assert dry.exit_code == 0, dry.output
    assert '"will_run": true' in dry.output and '"estimated_rows"' in dry.output
    assert Backfiller(platform).ledger.entries() == []
    ran = runner.invoke(
        app,
        [
            *base,
            "backfill",
            "run",
            VIEW,
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
            "--to",
            "offline",
            "--json",
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert '"ok": true' in ran.output
    status = runner.invoke(app, [*base, "backfill", "status", VIEW, "--json"])
    assert status.exit_code == 0 and '"target": "offline"' in status.output
    bad = runner.invoke(app, [*base, "backfill", VIEW, "--start", "2026-11-02", "--end", "2026-11-01"])
    assert bad.exit_code != 0
