"""Tenant isolation with Redis ACLs on the machine's Redis 7.0 (users created and removed here)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
import redis
from feast import RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from fs_platform.config import load_config
from fs_platform.errors import ConfigError, OnlineAccessDenied
from fs_platform.plugins.redis_store.acl import acl_rules
from fs_platform.plugins.redis_store.keys import KeyLayout
from tests.plugins.redis_store.conftest import MACHINE_URL, NOW, STORE_TYPE, Repo

pytestmark = pytest.mark.redis


def _acl_user(admin, user: str, prefix: str, role: str = "admin") -> str:
    """A user with the rules `fs tenant acl` prints for ``prefix`` (plus a password); returns it."""
    pw = uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, *acl_rules(KeyLayout(prefix, "shared"), role), f">{pw}")
    return pw


@pytest.fixture
def tenants(monkeypatch):
    admin = redis.Redis.from_url(MACHINE_URL)
    suffix = uuid.uuid4().hex[:8]
    made = {}
    for name in ("acme", "globex"):
        user, prefix = f"fs_test_{name}_{suffix}", f"{name}{suffix}"
        pw = _acl_user(admin, user, prefix)
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


def test_prefix_with_a_glob_character_is_refused_at_config_load(tmp_path):
    # 'ten?' used to be accepted, and its documented ACL pattern ~ten?:* matched tenant 'tena'.
    (tmp_path / "feature_store.yaml").write_text(
        f"project: shared\nregistry: r.db\nprovider: local\nentity_key_serialization_version: 3\n"
        f"online_store: {{type: {STORE_TYPE}, url: '{MACHINE_URL}', key_prefix: 'ten?'}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert "key_prefix 'ten?' must be" in str(err.value) and "\n" not in str(err.value)
    for bad in ("ten*", "t[a]", "a\\b", "a:b", "{a}", "", "-a", "a b"):
        with pytest.raises(ConfigError, match="key_prefix"):
            KeyLayout(bad, "shared")


def test_generated_acl_roles_confine_a_tenant(tmp_path, monkeypatch):
    """`fs tenant acl` roles on real ACL users: serve reads only, write materializes, admin tears
    down; none reaches a tenant whose prefix merely starts with the same letters."""
    admin = redis.Redis.from_url(MACHINE_URL)
    suffix = uuid.uuid4().hex[:8]
    prefix, users = f"ten{suffix}", {}
    try:
        for role in ("serve", "write", "admin"):
            users[role] = f"fs_test_{role}_{suffix}"
            monkeypatch.setenv(f"FS_TEST_{role.upper()}_USER", users[role])
            monkeypatch.setenv(f"FS_TEST_{role.upper()}_PW", _acl_user(admin, users[role], prefix, role))

        def online(role):
            return {
                "url": MACHINE_URL,
                "key_prefix": prefix,
                "username_env": f"FS_TEST_{role.upper()}_USER",
                "password_env": f"FS_TEST_{role.upper()}_PW",
            }

        writer = Repo(tmp_path / "w", online("write"), project="shared")
        writer.materialize()
        reader = Repo(tmp_path / "r", online("serve"), project="shared")
        assert reader.store.get_online_features(["profile:count"], {"customer_id": [3]}).to_dict()[
            "count"
        ] == [3]
        with pytest.raises(OnlineAccessDenied, match="ACL"):
            reader.materialize()
        with pytest.raises(OnlineAccessDenied, match="ACL"):
            writer.store.teardown()  # SCAN/UNLINK are admin-only
        neighbour = f"{prefix}a:shared:{{customer_id=3}}:profile"  # 'ten?' would have matched this
        admin.set(neighbour, "x")
        raw = redis.Redis.from_url(
            MACHINE_URL, username=users["admin"], password=os.environ["FS_TEST_ADMIN_PW"]
        )
        with pytest.raises(redis.exceptions.NoPermissionError):
            raw.get(neighbour)
        Repo(tmp_path / "a", online("admin"), project="shared").close()  # teardown
        assert not list(admin.scan_iter(match=f"{prefix}:shared:*"))
    finally:
        for user in users.values():
            admin.execute_command("ACL", "DELUSER", user)
        for key in admin.scan_iter(match=f"{prefix}*"):
            admin.unlink(key)


def test_fs_tenant_acl_prints_the_rules_of_the_repo_prefix(tmp_path, capsys):
    from fs_platform.cli.main import main

    (tmp_path / "feature_store.yaml").write_text(
        f"project: shared\nregistry: r.db\nprovider: local\nentity_key_serialization_version: 3\n"
        f"online_store: {{type: {STORE_TYPE}, url: '{MACHINE_URL}', key_prefix: acme_eu}}\n"
    )
    assert main(["--repo", str(tmp_path), "tenant", "acl", "acme_serve", "--role", "serve"]) == 0
    assert capsys.readouterr().out.split() == [
        "ACL",
        "SETUSER",
        "acme_serve",
        "reset",
        "on",
        "~acme_eu:*",
        "resetchannels",
        "-@all",
        "+get",
        "+mget",
        "+hget",
        "+ping",
        "+select",
    ]


def test_hashed_key_names_reveal_no_entity_id(tmp_path, monkeypatch):
    """With key_hash_secret_env, SCAN lists no entity id; one entity's views still share a hash tag."""
    from redis.crc import key_slot

    monkeypatch.setenv("FS_TEST_KEY_SECRET", uuid.uuid4().hex)
    prefix = f"hashed{uuid.uuid4().hex[:8]}"
    online = {"url": MACHINE_URL, "key_prefix": prefix, "key_hash_secret_env": "FS_TEST_KEY_SECRET"}
    repo = Repo(tmp_path, online, project="shared")
    try:
        repo.materialize()  # Arrow path (RedisArrowEngine or write_arrow)
        key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=4)])
        later = NOW + timedelta(seconds=1)
        repo.online_store.write_batch(  # the per-row (protobuf) path builds the same hashed key
            repo.config,
            repo.profile,
            [(key, {"count": Value(int64_val=40), "country": Value(string_val="x")}, later, None)],
        )
        admin = redis.Redis.from_url(MACHINE_URL)
        names = [k.decode() for k in admin.scan_iter(match=f"{prefix}:*")]
        entity_keys = [k for k in names if "{" in k]
        assert entity_keys and not [k for k in entity_keys if "customer_id" in k or "=" in k]
        tags = {}
        for k in entity_keys:
            tags.setdefault(k.split("}:")[1], set()).add(k.split("{")[1].split("}")[0])
        assert (
            len(tags["profile"]) == 20 and tags["profile"] == tags["txn"]
        )  # same tags for the same entities
        assert {
            key_slot(k.encode()) for k in entity_keys if k.endswith(("}:profile", "}:txn"))
        }.__len__() == 20
        got = repo.store.get_online_features(
            ["profile:count", "txn:amount"], {"customer_id": [3, 4]}
        ).to_dict()
        assert got["count"] == [3, 40] and got["amount"][1] == 6.0
        monkeypatch.setenv("FS_TEST_KEY_SECRET", uuid.uuid4().hex)  # another secret: another key space
        other = Repo(tmp_path / "other", online, project="shared")
        assert other.store.get_online_features(["profile:count"], {"customer_id": [3]}).to_dict()[
            "count"
        ] == [None]
        monkeypatch.delenv("FS_TEST_KEY_SECRET")
        with pytest.raises(ConfigError, match=r"\$FS_TEST_KEY_SECRET, which is not set"):
            Repo(tmp_path / "unset", online, project="shared")
    finally:
        for key in redis.Redis.from_url(MACHINE_URL).scan_iter(match=f"{prefix}:*"):
            redis.Redis.from_url(MACHINE_URL).unlink(key)
