"""Tenant isolation with Redis ACLs on the machine's Redis 7.0 (users created and removed here)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from feast import RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from fs.errors import OnlineAccessDenied
from tests.plugins.redis_store.conftest import MACHINE_URL, NOW, STORE_TYPE, Repo

pytestmark = pytest.mark.redis

# The command set docs/online_store.md recommends for a tenant's service user.
TENANT_COMMANDS = (
    "-@all +get +mget +set +evalsha +script|load +hget +hsetnx +hkeys +hdel +scan +unlink +ping +select"
)


@pytest.fixture
def tenants(monkeypatch):
    admin = redis.Redis.from_url(MACHINE_URL)
    suffix = uuid.uuid4().hex[:8]
    made = {}
    for name in ("acme", "globex"):
        user, prefix, pw = f"fs_test_{name}_{suffix}", f"{name}{suffix}", uuid.uuid4().hex
        admin.execute_command(
            "ACL",
            "SETUSER",
            user,
            "reset",
            "on",
            f">{pw}",
            f"~{prefix}:*",
            "resetchannels",
            *TENANT_COMMANDS.split(),
        )
        monkeypatch.setenv(f"FS_TEST_{name.upper()}_USER", user)
        monkeypatch.setenv(f"FS_TEST_{name.upper()}_PW", pw)
        made[name] = {
            "url": MACHINE_URL,
            "key_prefix": prefix,
            "username_env": f"FS_TEST_{name.upper()}_USER",
            "password_env": f"FS_TEST_{name.upper()}_PW",
        }
    yield made
    for name in made:
        admin.execute_command("ACL", "DELUSER", f"fs_test_{name}_{suffix}")
    for cfg in made.values():
        for key in admin.scan_iter(match=cfg["key_prefix"] + ":*"):
            admin.unlink(key)


def test_tenant_cannot_read_or_write_another_tenants_keys(tmp_path, tenants):
    acme = Repo(tmp_path / "acme", tenants["acme"], project="shared")
    acme.materialize()
    assert acme.store.get_online_features(["profile:count"], {"customer_id": [3]}).to_dict()["count"] == [3]

    # globex's credentials pointed at acme's prefix: every read and write is refused by Redis
    intruder = dict(tenants["globex"], key_prefix=tenants["acme"]["key_prefix"])
    spy_store = type(acme.online_store)()
    spy_config = RepoConfig(
        project="shared",
        registry=str(tmp_path / "acme" / "registry.db"),
        provider="local",
        online_store={"type": STORE_TYPE, **intruder},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=3)])
    with pytest.raises(OnlineAccessDenied, match="ACL"):
        spy_store.online_read(spy_config, acme.profile, [key], ["count"])
    with pytest.raises(OnlineAccessDenied, match="ACL"):
        spy_store.write_batch(spy_config, acme.profile, [(key, {"count": Value(int64_val=666)}, NOW, None)])

    # and with raw redis-py the same user cannot touch acme's keys
    raw = redis.Redis.from_url(
        MACHINE_URL, username=os.environ["FS_TEST_GLOBEX_USER"], password=os.environ["FS_TEST_GLOBEX_PW"]
    )
    acme_key = f"{tenants['acme']['key_prefix']}:shared:{{customer_id=3}}:profile"
    for attempt in (lambda: raw.get(acme_key), lambda: raw.set(acme_key, "x"), lambda: raw.unlink(acme_key)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert acme.store.get_online_features(["profile:count"], {"customer_id": [3]}).to_dict()["count"] == [3]
    acme.close()
