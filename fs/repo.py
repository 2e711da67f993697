"""Reading a feature repo's Python definitions (Feast's parser, made safe to call from a library)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from fs_platform.errors import RepoError


def _forget_repo_modules(repo: Path) -> None:
    """Drop modules imported from a repo folder, so a second parse in the same process (tests,
    notebooks after an edit, another repo with a ``features.py``) reads the files again."""
    root = str(repo.resolve())
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(root + os.sep):
            del sys.modules[name]
    for path in repo.glob("**/*.py"):
        name = ".".join(path.relative_to(repo).with_suffix("").parts)
        sys.modules.pop(name, None)


@contextlib.contextmanager
def _inside(repo: Path):
    # Feast imports repo files as top-level modules relative to the working directory.
    _forget_repo_modules(repo)
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(repo)
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def parse(repo: Path):
    """The repo's Feast objects (``RepoContents``); one clear error if a definition file fails."""
    from feast.repo_operations import parse_repo

    with _inside(repo):
        try:
            return parse_repo(repo)
        except Exception as e:  # a user's Python file: anything can go wrong in it
            raise RepoError(
                f"could not load feature definitions from {repo}: {type(e).__name__}: {e}",
                hint="fix the definition file, then run `fs plan`",
            ) from e
