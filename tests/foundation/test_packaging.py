"""The distribution installs one import namespace, ``fs_platform``, and nothing else at the top level.

`fs` is PyFilesystem2's import name and `cli`, `plugins`, `parity`, `backfill` are generic: installing fs
beside a package that owns one of them would break one or the other. The repository keeps its top-level
folders (setuptools ``package-dir`` maps them under ``fs_platform``); these tests check the built wheel,
that every source folder is listed as a package, and that no code imports the old names (which still
resolve from the repository root, so a missed rename would pass every other test and break the wheel).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "fs": "fs_platform",
    "plugins": "fs_platform.plugins",
    "cli": "fs_platform.cli",
    "parity": "fs_platform.parity",
    "backfill": "fs_platform.backfill",
}
OLD_IMPORT = re.compile(r"^\s*(?:from|import) (?:fs|plugins|cli|parity|backfill)(?:\.|\s)", re.M)
OLD_NAMES_ON_PURPOSE = {"tests/foundation/test_config.py"}  # checks the refusal of an old type path
OLD_PATH = re.compile(r"""["'](?:plugins\.[a-z_]+|cli\.main)""")


def _source_packages() -> set[str]:
    """Every folder holding Python code, under its installed name."""
    found = set()
    for folder, name in FOLDERS.items():
        for py in (ROOT / folder).rglob("*.py"):
            rel = py.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    return found


def test_every_source_folder_is_a_listed_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _source_packages() == listed
    missing_init = [p for p in _source_packages() if not _folder(p).joinpath("__init__.py").exists()]
    assert not missing_init, f"packages without __init__.py: {missing_init}"


def _folder(package: str) -> Path:
    parts = package.split(".")
    if len(parts) > 1 and parts[1] in FOLDERS and parts[1] != "fs":
        return ROOT.joinpath(parts[1], *parts[2:])
    return ROOT.joinpath("fs", *parts[1:])


def test_no_code_uses_the_old_top_level_names():
    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.yaml", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for rel in tracked:
        if rel in OLD_NAMES_ON_PURPOSE:
            continue
        text = (ROOT / rel).read_text(errors="replace")
        for rx in (OLD_IMPORT, OLD_PATH):
            offenders += [f"{rel}: {m.group(0).strip()}" for m in rx.finditer(text)]
        offenders += [f"{rel}: type: {m}" for m in re.findall(r"type:\s*(plugins\.\S+)", text)]
    assert not offenders, offenders[:20]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    leftover = not (ROOT / "build").exists()  # setuptools builds in the tree: leave it as found
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
        )
    finally:
        if leftover:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    (built,) = out.glob("fs_platform-*.whl")
    return built


@pytest.mark.slow
def test_wheel_installs_only_fs_platform(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"fs_platform"}
    # the wheel carries every module and the Lua scripts the Redis store loads at import
    for must in (
        "fs_platform/cli/main.py",
        "fs_platform/plugins/redis_store/writes.lua",
        "fs_platform/plugins/redis_store/tiles.lua",
        "fs_platform/governance/catalog.py",
        "fs_platform/plugins/serving/app.py",
        "fs_platform/backfill/runner.py",
    ):
        assert must in names, must
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fs = fs_platform.cli.main:run" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.mark.slow
def test_import_layering_contracts_hold(wheel, tmp_path):
    """pyproject's [tool.importlinter] contracts, on the installed layout (import-linter walks a package's
    folder, so it needs fs_platform as installed, not the repository's split folders)."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " 0 broken" in proc.stdout
