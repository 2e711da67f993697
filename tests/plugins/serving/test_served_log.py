"""Served-feature logging: what a sampled request served lands in the Delta log with its request id, model,
feature service, values and event times; PII values and pii entity keys hashed or left out; a full queue
or a failing write drops (counted) without failing a request; `fs serve` workers flush on SIGTERM."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from deltalake import DeltaTable
from feast import Entity, FeatureView, Field
from feast.types import String
from feast.value_type import ValueType

from fs_platform.governance.pii import ONLINE_READER, PSEUDONYMOUS_READER, mask
from fs_platform.observability import REGISTRY
from tests.plugins.serving.asgi import request
from tests.plugins.serving.conftest import make_app

pytestmark = pytest.mark.redis

KEY = "k-scoring-0123456789abcdef"
AUTH = {
    "mode": "api_key",
    "identities": [
        {"name": "scoring", "key_env": "FS_TEST_KEY_SCORING", "roles": [ONLINE_READER, PSEUDONYMOUS_READER]},
    ],
}
BODY = {"features": ["txn:amount", "profile:count"], "entities": {"customer_id": [1, 2, 999]}}


@pytest.fixture
def pii_repo(repo, monkeypatch):
    """A pseudonymous feature and a merchant entity tagged pii beside the repo's unclassified views."""
    monkeypatch.setenv("FS_TEST_KEY_SCORING", KEY)
    secret = FeatureView(
        name="secret",
        entities=[repo.customer],
        source=repo.profile.batch_source,
        ttl=None,
        schema=[Field(name="country", dtype=String, tags={"pii": "pseudonymous"})],
    )
    merchant = Entity(
        name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING, tags={"pii": "pii"}
    )
    repo.store.apply([merchant, secret])
    repo.store.materialize_incremental(datetime.now(UTC), ["secret"])
    return repo


def _dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("fs_served_log_dropped_total", {"reason": reason}) or 0.0


def _rows(path) -> list[dict]:
    return sorted(
        DeltaTable(str(path)).to_pyarrow_table().to_pylist(), key=lambda r: (r["request_id"], r["row"])
    )


@pytest.mark.parametrize("pii", ["hash", "exclude"])
def test_a_sampled_request_is_logged_with_its_fields_and_pii_hashed_or_excluded(pii_repo, tmp_path, pii):
    path = tmp_path / "served"
    app = make_app(pii_repo.store, auth=AUTH, served_log={"sample": 1.0, "path": str(path), "pii": pii})
    before = datetime.now(UTC)
    body = {
        "features": ["txn:amount", "secret:country", "pair:amount"],
        "full_feature_names": True,
        "entities": {"customer_id": [1, 2], "merchant_id": ["m1", "m2"]},
    }
    headers = {"X-API-Key": KEY, "X-Request-Id": "req-1", "X-Model-Name": "fraud", "X-Model-Version": "v3"}
    status, _, served = request(app, "POST", "/get-online-features", body, headers=headers)
    assert status == 200, served
    app.served_log.close()

    rows = _rows(path)
    assert [r["row"] for r in rows] == [0, 1]
    names = served["metadata"]["feature_names"]
    results = dict(zip(names, served["results"], strict=True))
    for i, r in enumerate(rows):
        assert (r["request_id"], r["model_name"], r["model_version"]) == ("req-1", "fraud", "v3")
        assert (r["feature_service"], r["source"]) == ("features", "serve")
        assert (
            before <= r["served_at"] <= datetime.now(UTC)
            and r["served_date"] == r["served_at"].date().isoformat()
        )
        entities, features = json.loads(r["entities"]), json.loads(r["features"])
        statuses, events = json.loads(r["statuses"]), json.loads(r["event_us"])
        assert entities["customer_id"] == [1, 2][i]
        assert features["txn__amount"] == results["txn__amount"]["values"][i]
        assert statuses["txn__amount"] == results["txn__amount"]["statuses"][i] == "PRESENT"
        served_ts = datetime.fromisoformat(
            results["txn__amount"]["event_timestamps"][i].replace("Z", "+00:00")
        )
        assert events["txn__amount"] == int(served_ts.timestamp() * 1_000_000)
        assert statuses["pair__amount"] == results["pair__amount"]["statuses"][i]
        country = results["secret__country"]["values"][i]
        assert country is not None
        if pii == "hash":  # a keyed token, equal to the one for the same value; never the value
            assert entities["merchant_id"] == mask(["m1", "m2"][i])
            assert features["secret__country"] == mask(country) != country
            assert statuses["secret__country"] == "PRESENT"
        else:
            assert "merchant_id" not in entities
            assert "secret__country" not in features and "secret__country" not in statuses
        # no clear value as a JSON string anywhere (a hex token may contain "c1" as a substring)
        assert f'"{country}"' not in r["features"]
        assert '"m1"' not in r["entities"] and '"m2"' not in r["entities"]


def test_logging_off_costs_nothing_and_writes_nothing(repo, tmp_path):
    app = make_app(repo.store)
    assert app.served_log is None  # the request path pays one `is None`
    assert request(app, "POST", "/get-online-features", BODY)[0] == 200


def test_a_full_queue_drops_and_counts_without_failing_requests(repo, tmp_path):
    path = tmp_path / "served"
    settings = {"sample": 1.0, "path": str(path), "queue_max": 2, "flush_s": 3600, "batch_rows": 100_000}
    app = make_app(repo.store, served_log=settings)
    before = _dropped("queue_full")
    statuses = [request(app, "POST", "/get-online-features", BODY)[0] for _ in range(5)]
    assert statuses == [200] * 5
    assert _dropped("queue_full") - before == 3  # the writer had not flushed: two queued, three dropped
    app.served_log.close()
    assert len(_rows(path)) == 2 * 3  # the two queued requests, three entity rows each


def test_a_failing_write_drops_its_batch_and_counts_it(repo, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = make_app(repo.store, served_log={"sample": 1.0, "path": str(blocker / "served"), "flush_s": 3600})
    before = _dropped("write_failed")
    assert [request(app, "POST", "/get-online-features", BODY)[0] for _ in range(3)] == [200] * 3
    app.served_log.close()
    assert _dropped("write_failed") - before == 3


@pytest.mark.slow
def test_fs_serve_workers_log_sum_their_drops_and_flush_on_sigterm(repo, tmp_path):
    from tests.plugins.serving.test_server import Server

    path = tmp_path / "served"
    served_log = {"sample": 1.0, "path": str(path), "queue_max": 8, "flush_s": 3600, "batch_rows": 100_000}
    server = Server(repo, {"workers": 2, "served_log": served_log})
    try:
        assert [server.post(BODY)[0] for _ in range(40)] == [200] * 40
        metrics = server.get("/metrics")[1].decode()
    finally:
        assert server.stop() == 0
    dropped = sum(
        float(v) for v in re.findall(r'fs_served_log_dropped_total\{reason="queue_full"\} (\S+)', metrics)
    )
    assert (
        40 - 16 <= dropped <= 40 - 8
    )  # each worker queues 8 at most (flush_s: nothing written before SIGTERM)
    rows = _rows(path)
    assert len(rows) == (40 - dropped) * 3  # everything queued was written by the drain
    assert {json.loads(r["entities"])["customer_id"] for r in rows} == {1, 2, 999}


def test_the_sdk_logs_online_reads_and_fast_reader_reads_when_enabled(repo, tmp_path):
    from fs_platform.plugins.redis_store.fast_read import FastReader
    from fs_platform.plugins.serving import served_log
    from fs_platform.store import FsFeatureStore

    store = FsFeatureStore(config=repo.config)
    store.get_online_features(["txn:amount"], [{"customer_id": 1}])  # not enabled: nothing logged
    path = tmp_path / "served"
    log = served_log.enable(store, path=str(path), model_name="fraud", model_version="7")
    response = store.get_online_features(
        ["txn:amount", "profile:count"], [{"customer_id": 1}, {"customer_id": 2}]
    )
    reader = FastReader(store, ["txn:amount"])
    log.record(reader, reader.serve({"customer_id": [999]}), request_id="fast-1")
    store.close()  # flushes

    rows = _rows(path)
    assert len(rows) == 3 and {r["source"] for r in rows} == {"sdk"}
    assert {(r["model_name"], r["model_version"]) for r in rows} == {("fraud", "7")}
    sdk = [r for r in rows if r["request_id"] != "fast-1"]
    assert len({r["request_id"] for r in sdk}) == 1  # one generated id for the read's two rows
    expected = response.to_dict()
    for r in sdk:
        entities, features = json.loads(r["entities"]), json.loads(r["features"])
        assert entities == {"customer_id": [1, 2][r["row"]]}
        assert features == {"amount": expected["amount"][r["row"]], "count": expected["count"][r["row"]]}
        assert json.loads(r["statuses"])["amount"] == "PRESENT" and json.loads(r["event_us"])["amount"] > 0
    (fast,) = [r for r in rows if r["request_id"] == "fast-1"]
    assert json.loads(fast["features"]) == {"amount": None}
    assert json.loads(fast["statuses"]) == {"amount": "NOT_FOUND"}
