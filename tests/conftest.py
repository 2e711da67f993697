"""Project-wide test helpers. Area-specific fixtures live in each test folder's conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_REPO = ROOT / "feature_repo"


def drop_prefix(url: str, *prefixes: str) -> None:
    """Remove every key of a test's key prefixes (its own key space on a shared Redis)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.unlink(*keys)
    finally:
        client.close()


def copy_example_repo(dest: Path) -> Path:
    """A private copy of feature_repo/ (definitions and env overlays, no data) under ``dest``."""
    repo = dest / "feature_repo"
    shutil.copytree(EXAMPLE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return repo


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    return copy_example_repo(tmp_path)


def stop_embedded_servers(root: Path) -> list[Path]:
    """Stop every embedded Valkey whose data directory is under ``root`` (repos copied into tmp dirs
    start one on first use, in-process or through the CLI); returns the directories stopped."""
    from fs_platform.plugins.redis_store.embedded import stop_server

    return [state.parent for state in root.glob("**/valkey/server.json") if stop_server(state.parent)]


def pytest_sessionfinish(session) -> None:
    """`make test` leaves nothing running (issue #14.12): stop the embedded servers tests started."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        stop_embedded_servers(factory.getbasetemp())
