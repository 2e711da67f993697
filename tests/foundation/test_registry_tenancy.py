"""Tenants are separated in the registry too (issue #21.3), as docs/tenancy.md sets it up: each tenant's
SQL registry is its own Postgres database owned by the tenant's role (CONNECT revoked from PUBLIC),
and its Redis user is confined to its key prefix (`fs tenant acl`). With tenant A's credentials, CI can
change neither tenant B's definitions (B's registry refuses A's role) nor B's online keys (B's prefix
refuses A's Redis user), whatever it puts in its configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import redis

from fs_platform import datagen
from fs_platform.plugins.redis_store.acl import acl_rules
from fs_platform.plugins.redis_store.keys import KeyLayout

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/12"


class Tenant:
    def __init__(self, name: str):
        self.name, self.role, self.db = name, f"{name}_ci", f"{name}_registry"
        self.prefix, self.password = name, uuid.uuid4().hex

    def registry_url(self, db: str | None = None) -> str:
        return f"postgresql+psycopg://{self.role}:{self.password}@127.0.0.1:5432/{db or self.db}"

    def redis_url(self) -> str:
        return REDIS.replace("redis://", f"redis://{self.role}:{self.password}@")


@pytest.fixture
def tenants():
    import psycopg

    suffix = uuid.uuid4().hex[:8]
    pair = [Tenant(f"tena{suffix}"), Tenant(f"tenb{suffix}")]
    admin = redis.Redis.from_url(REDIS)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for t in pair:
            conn.execute(f"CREATE ROLE {t.role} LOGIN PASSWORD '{t.password}'")
            conn.execute(f'CREATE DATABASE "{t.db}" OWNER {t.role}')
            conn.execute(f'REVOKE CONNECT ON DATABASE "{t.db}" FROM PUBLIC')
            admin.execute_command(
                "ACL",
                "SETUSER",
                t.role,
                *acl_rules(KeyLayout(t.prefix, "payments"), "admin"),
                f">{t.password}",
            )
    yield pair
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for t in pair:
            conn.execute(f'DROP DATABASE IF EXISTS "{t.db}" WITH (FORCE)')
            conn.execute(f"DROP ROLE IF EXISTS {t.role}")
    for t in pair:
        admin.execute_command("ACL", "DELUSER", t.role)
        keys = list(admin.scan_iter(match=f"{t.prefix}:*"))
        if keys:
            admin.unlink(*keys)


def _fs(repo, registry_url: str, redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FS_REGISTRY_URL": registry_url, "FS_REDIS_URL": redis_url, "FS_TENANT": prefix}
    return subprocess.run(
        [sys.executable, "-m", "fs_platform.cli.main", "--repo", str(repo), "--env", "staging", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _keys(prefix: str) -> dict[bytes, bytes]:
    client = redis.Redis.from_url(REDIS)
    keys = sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
    return {k: client.dump(k) for k in keys}


def _views(db: str) -> list[str]:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}") as conn:
        return sorted(r[0] for r in conn.execute("SELECT feature_view_name FROM feature_views"))


def test_one_tenants_ci_cannot_change_another_tenants_registry_or_keys(example_repo, tenants):
    a, b = tenants
    datagen.write_tables(datagen.generate(seed=1, customers=20, merchants=5, days=1), example_repo / "data")
    done = _fs(example_repo, b.registry_url(), b.redis_url(), b.prefix, "apply")
    assert done.returncode == 0, done.stderr
    done = _fs(
        example_repo,
        b.registry_url(),
        b.redis_url(),
        b.prefix,
        "materialize",
        "now-1d",
        "now",
        "--views",
        "customer_profile",
    )
    assert done.returncode == 0, done.stderr
    views_before, keys_before = _views(b.db), _keys(b.prefix)
    assert "customer_profile" in views_before and len(keys_before) > 5

    # A's role pointed at B's registry: refused by Postgres, one line, nothing changed.
    denied = _fs(example_repo, a.registry_url(db=b.db), a.redis_url(), a.prefix, "apply")
    assert denied.returncode == 1
    lines = denied.stderr.strip().splitlines()
    assert len(lines) == 1 and "permission denied" in lines[0] and a.password not in lines[0], denied.stderr

    # A's own registry with B's key prefix: the definitions land in A's registry only, and A's Redis
    # user may not write B's keys.
    _fs(example_repo, a.registry_url(), a.redis_url(), b.prefix, "apply")
    crossed = _fs(
        example_repo,
        a.registry_url(),
        a.redis_url(),
        b.prefix,
        "materialize",
        "now-1d",
        "now",
        "--views",
        "customer_profile",
    )
    assert crossed.returncode == 1
    assert "NOPERM" in crossed.stderr or "permission" in crossed.stderr.lower(), crossed.stderr
    assert a.password not in crossed.stderr

    assert _views(b.db) == views_before
    assert _keys(b.prefix) == keys_before
