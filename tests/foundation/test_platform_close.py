"""#20.8: ``Platform.close()`` and ``with Platform(...) as p:`` close what the platform opened (the
online store's Redis connections, the Spark sessions it started), and the CLI closes the platform a
command opened when the command ends. Observed from outside: this process's TCP connections to Redis
and the Delta store's open Spark sessions. Machine Redis, embedded Sail."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import psutil
import pytest

from fs_platform.cli.main import main
from fs_platform.platform import Platform

pytestmark = pytest.mark.redis

REDIS_PORT = 6379


def _redis_connections() -> set:
    """This process's open connections to Redis (local ports). Compared as sets: connections other
    tests left to the garbage collector may close meanwhile, never the ones asserted gone."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == REDIS_PORT and c.status == psutil.CONN_ESTABLISHED
    }


def _sessions() -> list:
    from fs_platform.plugins.delta.engine import open_sessions

    return open_sessions()


def _entity_df() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [datetime.now(UTC)] * 2})


def test_the_context_manager_closes_redis_and_the_spark_sessions_it_started(seeded_repo):
    from fs_platform.plugins.delta.engine import stop_session

    for session in _sessions():  # start from no Delta-store session: this platform starts Spark's
        stop_session(session)
    redis_before = _redis_connections()
    with Platform(seeded_repo) as p:
        p.store.get_online_features(["customer_profile:account_age_days"], [{"customer_id": 1}])
        p.store.get_historical_features(_entity_df(), ["customer_profile:account_age_days"]).to_df()
        assert _redis_connections() - redis_before
        started = _sessions()
        assert started
    assert not _redis_connections() - redis_before
    assert not any(s is t for s in _sessions() for t in started)

    # A closed platform reopens what it needs; close() twice is harmless.
    p.store.get_online_features(["customer_profile:account_age_days"], [{"customer_id": 1}])
    p.close()
    p.close()
    assert not _redis_connections() - redis_before


def test_spark_sessions_open_before_the_platform_stay_open(seeded_repo):
    from fs_platform.plugins.delta.engine import get_spark

    kept = get_spark(Platform(seeded_repo).config)
    with Platform(seeded_repo) as p:
        p.store.get_historical_features(_entity_df(), ["customer_profile:account_age_days"]).to_df()
    assert any(s is kept for s in _sessions())
    assert kept.range(2).count() == 2


def test_the_cli_closes_the_platform_when_the_command_ends(seeded_repo, capsys):
    redis_before, sessions_before = _redis_connections(), _sessions()
    assert main(["--repo", str(seeded_repo), "materialize", "-1d", "now", "--views", "customer_profile"]) == 0
    assert not _redis_connections() - redis_before
    assert [id(s) for s in _sessions()] == [id(s) for s in sessions_before]
    # also after an error inside the command (an unknown view: the platform was opened, then it failed)
    assert main(["--repo", str(seeded_repo), "materialize", "-1d", "now", "--views", "nope"]) == 1
    assert not _redis_connections() - redis_before
