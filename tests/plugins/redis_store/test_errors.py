"""Errors: unknown features, unreachable servers (host named, credentials never), retry settings."""

from __future__ import annotations

import socket

import pytest
from feast import utils
from feast.protos.feast.types.Value_pb2 import Value

from fs_platform.errors import ConfigError, OnlineStoreUnavailable, TransientError, UnknownFeatureError
from tests.plugins.redis_store.conftest import MACHINE_URL, Repo

pytestmark = pytest.mark.redis


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unknown_feature_in_online_read(tmp_path):
    repo = Repo(tmp_path, {"url": MACHINE_URL})
    try:
        keys = utils._get_entity_key_protos([{"customer_id": Value(int64_val=1)}])
        with pytest.raises(UnknownFeatureError, match="profile.*nope"):
            repo.online_store.online_read(repo.config, repo.profile, keys, ["count", "nope"])
    finally:
        repo.close()


def test_unreachable_names_host_not_credentials(tmp_path, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("FS_TEST_REDIS_PASSWORD", "s3cret-pw")
    online = {
        "url": f"redis://svc-user:url-pw@127.0.0.1:{port}/0",
        "password_env": "FS_TEST_REDIS_PASSWORD",
        "retry_attempts": 2,
        "retry_backoff_base_s": 0.001,
        "connect_timeout_s": 0.2,
    }
    repo = Repo(tmp_path, online)
    with pytest.raises(OnlineStoreUnavailable) as err:
        repo.store.get_online_features(["profile:count"], {"customer_id": [1]})
    msg = str(err.value)
    assert (
        f"127.0.0.1:{port}" in msg and "s3cret" not in msg and "url-pw" not in msg and "svc-user" not in msg
    )
    assert isinstance(err.value, TransientError)


def test_retry_settings_reach_the_client(tmp_path):
    repo = Repo(tmp_path, {"url": MACHINE_URL, "retry_attempts": 5})
    try:
        assert repo.online_store.state(repo.config).client.get_retry().get_retries() == 5
    finally:
        repo.close()


def test_missing_password_env_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="FS_TEST_UNSET_VAR"):
        Repo(tmp_path, {"url": MACHINE_URL, "password_env": "FS_TEST_UNSET_VAR"})
