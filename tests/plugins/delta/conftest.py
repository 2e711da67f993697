"""Fixtures for the Delta offline store: one embedded Sail per test session, Feast configs, tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from feast.infra.registry.registry import Registry
from feast.repo_config import RepoConfig

from fs_platform.plugins.delta.engine import Engine, get_engine
from tests.plugins.delta.delta_helpers import make_config


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
