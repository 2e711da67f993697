"""Fixtures for fs doctor / fs ops tests: private repo copies on real Delta tables and the machine's
Redis (``make_repo`` from tests/backfill/conftest.py), and helpers that inject problems."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
import redis

from fs_platform.backfill.lease import _this_host
from fs_platform.backfill.model import Kind, LedgerEntry, Status, Target
from fs_platform.backfill.runner import Backfiller
from fs_platform.timeutil import utcnow
from tests.backfill.conftest import END, REDIS_URL, make_repo  # noqa: F401 - the fixture, shared

VIEW = "customer_txn_rolling"  # the test-only plain view with a Python batch definition


def online_client(platform):
    from fs_platform.backfill.online import redis_store

    return redis_store(platform.store).state(platform.store.config)


def view_keys(platform, view: str = VIEW) -> list[bytes]:
    state = online_client(platform)
    return sorted(state.client.scan_iter(match=state.layout.view_pattern(view), count=1000))


def dead_lease(platform, view: str = VIEW) -> str:
    """A lease of ``view`` held by a process of this host that has exited, set with no expiry."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    record = {
        "holder": f"ghost run pid {proc.pid}",
        "token": "t0",
        **_this_host(),
        "pid": proc.pid,
        "start": 1,
    }
    leases = Backfiller(platform).leases
    leases._client.set(leases.key(view), json.dumps(record))
    return leases.key(view)


def failed_chunk(platform, view: str = VIEW, statuses=None):
    """A backfill chunk of the last 6 whole hours before END that the ledger records as failed offline
    and as still running online (its run was killed): ``statuses`` per target overrides."""
    end = END.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=6)
    statuses = statuses or {Target.OFFLINE: Status.FAILED, Target.ONLINE: Status.RUNNING}
    Backfiller(platform).ledger.record(
        LedgerEntry("injected", view, t, Kind.BACKFILL, start, end, s, "test", utcnow(), message="boom")
        for t, s in statuses.items()
    )
    return start, end


def leftover_keys(platform, view: str = "retired_view", n: int = 5) -> list[str]:
    """Online keys of a view that is not registered (as a deletion that skipped the store leaves them)."""
    state = online_client(platform)
    before, after = state.layout.view_affixes(view)
    keys = [f"{before}customer_id={i}{after}" for i in range(n)]
    for i, key in enumerate(keys):
        state.client.set(key, f"v{i}".encode(), ex=3600 if i % 2 else None)
    return keys


@pytest.fixture
def prod_repo(make_repo):  # noqa: F811
    """``(platform_dev, make_prod(**ops))``: a repo whose ``prod`` overlay only sets the ``ops:`` policy
    (the stores stay the dev ones, so prod rules are tested on real stores without prod services)."""
    import yaml

    from fs_platform.platform import Platform

    dev = make_repo()

    def make_prod(**ops) -> Platform:
        (dev.repo_path / "envs" / "prod.yaml").write_text(yaml.safe_dump({"ops": ops}))
        return Platform(dev.repo_path, env="prod")

    return dev, make_prod


@pytest.fixture(autouse=True)
def _no_kill_switch(monkeypatch):
    monkeypatch.delenv("FS_OPS_KILL_SWITCH", raising=False)


__all__ = ["REDIS_URL", "redis"]
