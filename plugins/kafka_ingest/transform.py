"""Per-topic transformation hooks: Python code in the feature repo, named ``file.py:name``.

The hook is called once per record, in offset order within a partition, with the validated record
(event time already a UTC datetime), and returns one row, a list of rows, or None. Rows carry the
feature view's join keys, features and event-time column.

A class instead of a function gets one instance per assigned partition, so it can keep rolling
state. Such a class may declare ``lookback`` (a timedelta): after a restart or a rebalance the
ingestor replays that much of the partition's history (by broker timestamp) through a fresh
instance before writing anything, so in-flight aggregates come out the same as without the restart.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fs_platform.errors import ConfigError

Hook = Callable[[dict], "dict | list[dict] | None"]


class TransformFactory:
    """Makes the per-partition callable for one topic's ``transform`` setting."""

    def __init__(self, target: object, ref: str):
        self.ref = ref
        self._target = target
        self.stateful = isinstance(target, type)
        self.lookback: timedelta | None = getattr(target, "lookback", None) if self.stateful else None

    def new(self) -> Hook:
        return self._target() if self.stateful else self._target


def load_transform(repo: Path, ref: str) -> TransformFactory:
    """Import ``file.py:name`` from the repo (a module per file, cached in ``sys.modules``)."""
    file_part, _, name = ref.partition(":")
    path = (repo / file_part).resolve()
    if not name or path.suffix != ".py" or not path.is_file():
        raise ConfigError(f"transform {ref!r}: expected file.py:name with the file inside {repo}")
    module_name = f"fs_ingest_transforms.{path.stem}"
    module = sys.modules.get(module_name)
    if module is None or getattr(module, "__file__", None) != str(path):
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # user code: report any failure as a config problem
            raise ConfigError(f"transform {ref!r}: importing {path} failed: {type(e).__name__}: {e}") from e
        sys.modules[module_name] = module
    target = getattr(module, name, None)
    if not callable(target):
        raise ConfigError(f"transform {ref!r}: {path.name} has no function or class {name!r}")
    return TransformFactory(target, ref)
