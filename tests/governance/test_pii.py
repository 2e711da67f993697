"""PII grant: an ungranted caller is refused PII features by the SDK guard and by the feature
server (Feast permissions from feature_repo/permissions.py); a granted caller reads them."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
import uvicorn

from fs_platform import repo as repo_mod
from fs_platform.errors import OnlineAccessDenied
from fs_platform.governance import pii
from fs_platform.governance.serving import instrument_feature_server

TOKENS = {
    "analyst-token": ("analyst", [pii.ONLINE_READER]),
    "stranger-token": ("stranger", []),
    "fraud-model-token": ("fraud-model", [pii.PSEUDONYMOUS_READER]),
    "kyc-token": ("kyc-service", [pii.PII_READER]),
}


def _customers(gov) -> list[int]:
    return [int(c) for c in gov.data.customer_profile["customer_id"].unique()[:3]]


def test_mask_is_stable_and_hides_the_value():
    assert pii.mask("gmail.com") == pii.mask("gmail.com") != pii.mask("yahoo.com")
    assert "gmail" not in pii.mask("gmail.com") and pii.mask_if(False, "x") == "x"


def test_sdk_guard_refuses_ungranted_callers(gov):
    rows = [{"customer_id": c} for c in _customers(gov)]
    with pytest.raises(OnlineAccessDenied, match=r"customer_profile:email_domain \(pii\).*fs-pii-reader"):
        pii.get_online_features(gov.store, ["customer_profile:email_domain"], rows)
    with pytest.raises(OnlineAccessDenied, match="email_domain"):
        pii.get_online_features(
            gov.store, ["customer_profile:email_domain"], rows, roles=[pii.PSEUDONYMOUS_READER]
        )
    with pytest.raises(OnlineAccessDenied, match=r"customer_profile:country \(pseudonymous\)"):
        pii.get_online_features(gov.store, gov.store.get_feature_service("fraud_model_v1"), rows)

    plain = pii.get_online_features(gov.store, ["customer_profile:kyc_level"], rows).to_dict()
    assert len(plain["kyc_level"]) == 3
    granted = pii.get_online_features(
        gov.store, ["customer_profile:email_domain"], rows, roles=[pii.PII_READER]
    )
    assert all(granted.to_dict()["email_domain"])
    pii.check_online_read(gov.store, ["customer_profile:country"], roles=[pii.PSEUDONYMOUS_READER])


@pytest.mark.parametrize(
    "ref",
    [
        "customer_profile@latest:email_domain",
        "customer_profile@v2:email_domain",
        "customer_profile@V0:email_domain",
        "customer_profile",
        "customer_profile@latest",
        "customer_profile@v1",
    ],
)
def test_sdk_guard_sees_through_versioned_and_whole_view_refs(gov, ref):
    with pytest.raises(OnlineAccessDenied, match=r"customer_profile:email_domain \(pii\)"):
        pii.check_online_read(gov.store, [ref])
    with pytest.raises(OnlineAccessDenied, match="email_domain"):
        pii.check_online_read(gov.store, [ref], roles=[pii.PSEUDONYMOUS_READER])
    pii.check_online_read(gov.store, [ref], roles=[pii.PII_READER])


def test_sdk_guard_whole_view_and_service_refs(gov):
    assert pii.sensitive_refs(gov.store, ["customer_profile"]) == {
        "customer_profile:email_domain": "pii",
        "customer_profile:country": "pseudonymous",
    }
    pii.check_online_read(gov.store, ["merchant_risk_daily"])  # no sensitive feature: no role needed
    pii.check_online_read(gov.store, "customer_profile:kyc_level")
    with pytest.raises(OnlineAccessDenied, match="email_domain"):
        pii.check_online_read(gov.store, "customer_profile@latest:email_domain")

    from feast import FeatureService

    view = gov.store.get_feature_view("customer_profile")
    whole = FeatureService(name="whole_profile", features=[view])
    with pytest.raises(OnlineAccessDenied, match=r"customer_profile:email_domain \(pii\)"):
        pii.check_online_read(gov.store, whole, roles=[pii.PSEUDONYMOUS_READER])
    pii.check_online_read(gov.store, whole, roles=[pii.PII_READER])
    only_email = FeatureService(name="email_only", features=[view[["email_domain"]]])
    with pytest.raises(OnlineAccessDenied, match="email_domain"):
        pii.check_online_read(gov.store, only_email)
    only_level = FeatureService(name="level_only", features=[view[["kyc_level"]]])
    pii.check_online_read(gov.store, only_level)


@pytest.fixture
def feature_server(gov):
    """Feast's own feature server with auth on: tokens resolve to users and roles as an OIDC
    provider would; the registry holds the repo's permissions."""
    from feast.feature_server import get_app
    from feast.permissions.auth.auth_manager import AllowAll, AuthManager, set_auth_manager
    from feast.permissions.auth.token_parser import TokenParser
    from feast.permissions.security_manager import no_security_manager
    from feast.permissions.server.rest_token_extractor import RestTokenExtractor
    from feast.permissions.server.utils import AuthManagerType, init_security_manager
    from feast.permissions.user import User

    class Directory(TokenParser):
        async def user_details_from_access_token(self, access_token: str) -> User:
            name, roles = TOKENS[access_token]
            return User(username=name, roles=roles)

    permissions = repo_mod.parse(gov.repo_path).permissions
    assert {p.name for p in permissions} >= {"fs-online-read-pii", "fs-online-read"}
    gov.store.apply(permissions)
    init_security_manager(AuthManagerType.OIDC, gov.store)
    set_auth_manager(AuthManager(token_parser=Directory(), token_extractor=RestTokenExtractor()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            instrument_feature_server(get_app(gov.store)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        no_security_manager()
        set_auth_manager(AllowAll())
        for p in permissions:
            gov.store.registry.delete_permission(p.name, gov.store.project)


def _read(url, token, body):
    return requests.post(
        f"{url}/get-online-features", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_feature_server_refuses_ungranted_callers(gov, feature_server):
    entities = {"customer_id": _customers(gov)}
    email = {"features": ["customer_profile:email_domain"], "entities": entities}
    assert _read(feature_server, "analyst-token", email).status_code == 403
    assert _read(feature_server, "fraud-model-token", email).status_code == 403
    service = {
        "feature_service": "fraud_model_v1",
        "entities": {**entities, "merchant_id": [1, 2, 3], "amount": [10.0, 20.0, 30.0]},
    }
    assert _read(feature_server, "analyst-token", service).status_code == 403

    ok = _read(feature_server, "kyc-token", email)
    assert ok.status_code == 200, ok.text
    assert all(ok.json()["results"][1]["values"])
    # The server checks whole views: customer_profile holds a pii feature, so even its
    # pseudonymous column needs fs-pii-reader there (the SDK guard is per feature).
    country = {"features": ["customer_profile:country"], "entities": entities}
    assert _read(feature_server, "fraud-model-token", country).status_code == 403
    assert _read(feature_server, "kyc-token", country).status_code == 200
    served = _read(feature_server, "fraud-model-token", service)  # the service selects country only
    assert served.status_code == 200, served.text
    merchant = {"features": ["merchant_risk_daily:txn_volume_1d"], "entities": {"merchant_id": [1, 2]}}
    assert _read(feature_server, "analyst-token", merchant).status_code == 200
    assert _read(feature_server, "stranger-token", merchant).status_code == 403
    assert (
        requests.post(f"{feature_server}/get-online-features", json=merchant, timeout=10).status_code == 401
    )

    from prometheus_client import generate_latest

    from fs_platform.observability import REGISTRY

    text = generate_latest(REGISTRY).decode()
    assert 'fs_serving_request_seconds_count{endpoint="/get-online-features",status="403"}' in text
    assert 'fs_pii_reads_denied_total{path="server"}' in text
