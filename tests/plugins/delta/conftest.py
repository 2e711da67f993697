"""Fixtures for the Delta offline store: one embedded Sail per test session, Feast configs, tables."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest puts tests/ on sys.path, where tests/plugins/ is a namespace package that shadows the real
# top-level `plugins` (the editable install's finder runs after plain path entries). Putting the repo
# root first restores it; pyproject's `pythonpath = ["."]` would do the same for every area.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402
from tests.plugins.delta.delta_helpers import make_config  # noqa: E402
from feast.infra.registry.registry import Registry  # noqa: E402
from feast.repo_config import RepoConfig  # noqa: E402

from plugins.delta.engine import Engine, get_engine  # noqa: E402


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The embedded Sail engine, started once and shared by every test (as in production)."""
    return get_engine(None)


@pytest.fixture
def config(tmp_path: Path, engine: Engine) -> RepoConfig:
    return make_config(tmp_path)


@pytest.fixture
def registry(config: RepoConfig) -> Registry:
    return Registry(config.project, config.registry, repo_path=config.repo_path)
