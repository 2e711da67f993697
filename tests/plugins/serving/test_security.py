"""Authenticated callers, PII grants per feature, keys and values never logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from feast import FeatureView, Field
from feast.types import String

from fs_platform.errors import ConfigError
from fs_platform.governance.pii import ONLINE_READER, PSEUDONYMOUS_READER
from tests.plugins.serving.asgi import request
from tests.plugins.serving.conftest import make_app

pytestmark = pytest.mark.redis

KEY_A = "k-analyst-0123456789abcdef"
KEY_S = "k-scoring-0123456789abcdef"
AUTH = {
    "mode": "api_key",
    "identities": [
        {"name": "scoring", "key_env": "FS_TEST_KEY_SCORING", "roles": [ONLINE_READER]},
        {"name": "analyst", "key_env": "FS_TEST_KEY_ANALYST", "roles": [ONLINE_READER, PSEUDONYMOUS_READER]},
    ],
}


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("FS_TEST_KEY_SCORING", KEY_S)
    monkeypatch.setenv("FS_TEST_KEY_ANALYST", KEY_A)


@pytest.fixture
def pii_repo(repo):
    """A view whose feature is classified pseudonymous, beside the repo's unclassified ones."""
    secret = FeatureView(
        name="secret",
        entities=[repo.customer],
        source=repo.profile.batch_source,
        ttl=None,
        schema=[Field(name="country", dtype=String, tags={"pii": "pseudonymous"})],
    )
    repo.store.apply([secret])
    repo.store.materialize_incremental(datetime.now(UTC), ["secret"])
    return repo


def _read(app, features, headers=None):
    return request(
        app,
        "POST",
        "/get-online-features",
        {"features": features, "entities": {"customer_id": [4242, 1]}},
        headers=headers,
    )


def test_api_keys_are_required_in_api_key_mode(repo, keys):
    app = make_app(repo.store, auth=AUTH)
    assert _read(app, ["txn:amount"])[0] == 401
    status, headers, body = _read(app, ["txn:amount"], {"Authorization": "Bearer wrong-key-0123456789"})
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert _read(app, ["txn:amount"], {"Authorization": f"Bearer {KEY_S}"})[0] == 200
    assert _read(app, ["txn:amount"], {"X-API-Key": KEY_A})[0] == 200
    assert request(app, "GET", "/health")[0] == 200  # liveness needs no key


def test_pii_features_need_the_grant(pii_repo, keys):
    app = make_app(pii_repo.store, auth=AUTH)
    status, _, body = _read(app, ["txn:amount", "secret:country"], {"X-API-Key": KEY_S})
    assert status == 403
    assert "secret:country" in body["detail"] and PSEUDONYMOUS_READER in body["detail"]
    status, _, body = _read(app, ["txn:amount", "secret:country"], {"X-API-Key": KEY_A})
    assert status == 200, body
    assert body["results"][2]["values"] == [None, "c1"]


def test_anonymous_callers_get_no_pii(pii_repo):
    app = make_app(pii_repo.store)  # auth.mode none
    assert _read(app, ["txn:amount"])[0] == 200
    assert _read(app, ["secret:country"])[0] == 403


def test_a_missing_key_variable_refuses_the_start(repo, monkeypatch):
    monkeypatch.delenv("FS_TEST_KEY_SCORING", raising=False)
    monkeypatch.setenv("FS_TEST_KEY_ANALYST", KEY_A)
    with pytest.raises(ConfigError, match="FS_TEST_KEY_SCORING"):
        make_app(repo.store, auth=AUTH)


def test_keys_entity_keys_and_values_are_not_logged(pii_repo, keys, caplog):
    app = make_app(pii_repo.store, auth=AUTH, access_log_sample=1.0)
    with caplog.at_level(logging.DEBUG):
        _read(app, ["txn:amount", "secret:country"], {"X-API-Key": KEY_A})
        _read(app, ["txn:amount"], {"X-API-Key": "not-a-key-0123456789"})
        _read(app, ["secret:country"], {"X-API-Key": KEY_S})
    text = caplog.text
    assert "get-online-features" in text  # the sampled access log did log
    for secret in (KEY_A, KEY_S, "not-a-key", "4242", "c1"):
        assert secret not in text
