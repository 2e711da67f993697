"""Mutual exclusion for registry writes (``fs apply``) across processes and machines.

SQL registries take a Postgres/MySQL advisory-style lock in the registry database itself, so two CI
jobs applying at once serialise; file registries take an ``fcntl`` lock next to the registry file.
"""

from __future__ import annotations

import contextlib
import fcntl
import zlib
from pathlib import Path

from fs.errors import ConfigError


@contextlib.contextmanager
def registry_lock(config):
    reg = config.registry
    if reg.registry_type == "sql":
        with _sql_lock(reg.path, f"fs-apply:{config.project}"):
            yield
        return
    path = Path(reg.path if Path(reg.path).is_absolute() else Path(config.repo_path) / reg.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _sql_lock(url: str, name: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(url)
    key = zlib.crc32(name.encode())
    try:
        conn = engine.connect()
    except OperationalError:
        host = engine.url.host or "local socket"
        raise ConfigError(
            f"cannot connect to the SQL registry database at {host}:{engine.url.port or ''}",
            hint="check FS_REGISTRY_URL and that the database is up",
        ) from None
    try:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        elif engine.dialect.name == "mysql":
            conn.execute(text("SELECT GET_LOCK(:n, -1)"), {"n": name})
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        else:  # sqlite: single-writer by construction
            yield
    finally:
        conn.close()
        engine.dispose()
