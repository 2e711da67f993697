"""Mutual exclusion for registry writes (``fs apply``) across processes and machines.

SQL registries take a Postgres/MySQL advisory-style lock in the registry database itself, so two CI
jobs applying at once serialise; file registries take an ``fcntl`` lock next to the registry file.
"""

from __future__ import annotations

import contextlib
import fcntl
import zlib
from pathlib import Path

from fs_platform.errors import ConfigError
from fs_platform.scrub import scrub


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
    except OperationalError as e:
        host = engine.url.host or "local socket"
        reason = _server_reason(e, engine.url.password)
        denied = "permission denied" in reason or "authentication failed" in reason
        raise ConfigError(
            f"cannot connect to the SQL registry database {engine.url.database or ''!r} at "
            f"{host}:{engine.url.port or ''}" + (f": {reason}" if reason else ""),
            hint="this role may not use that registry (one registry per tenant: docs/tenancy.md)"
            if denied
            else "check FS_REGISTRY_URL and that the database is up",
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


def _server_reason(error: Exception, password: str | None) -> str:
    """The server's one-line reason (``FATAL: ...``) from a driver error, scrubbed by the platform's one rule
    (``fs_platform.scrub``: no password, no quoted names or value-like tokens)."""
    text = str(getattr(error, "orig", error))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = next((ln for ln in lines if "FATAL" in ln), lines[0] if lines else "")
    return scrub(fatal.split("FATAL:", 1)[-1], secrets=(password,))
