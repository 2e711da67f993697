"""Project-wide test helpers. Area-specific fixtures live in each test folder's conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_REPO = ROOT / "feature_repo"


def copy_example_repo(dest: Path) -> Path:
    """A private copy of feature_repo/ (definitions and env overlays, no data) under ``dest``."""
    repo = dest / "feature_repo"
    shutil.copytree(EXAMPLE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return repo


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    return copy_example_repo(tmp_path)
