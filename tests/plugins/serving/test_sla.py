"""Holding the SLA: bad input is a 4xx naming the problem, a failed or hung Redis gives INVALID
statuses within the deadline (never a 500), the breaker stops hammering a dead Redis and lets a probe
through once it is back, and a full worker sheds load with 503 + Retry-After."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import orjson
import pytest
import redis

from tests.plugins.serving.asgi import call, request
from tests.plugins.serving.conftest import free_port, make_app

pytestmark = pytest.mark.redis

FEATURES = ["txn:amount", "profile:country", "pay_vs_amount:pay_ratio"]


def _body(rows=None, **extra):
    return {"features": FEATURES, "entities": rows or {"customer_id": [1, 2], "pay": [1.0, 2.0]}, **extra}


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"features": ["txn:amount"], "entities": {"customer_id": [NaN]}}', 400, "not JSON"),
        ({"features": ["txn:amount"], "entities": {"customer_id": [None]}}, 400, "not exactly INT64"),
        ({"features": ["txn:amount"], "entities": {"customer_id": ["01"]}}, 400, "not exactly INT64"),
        ({"features": ["txn:amount"], "entities": {"customer_id": [10**20]}}, 400, "not exactly INT64"),
        ({"features": ["txn:amount"], "entities": {"customer_id": [1.5]}}, 400, "not exactly INT64"),
        ({"features": ["txn:amount"], "entities": {"customer_id": [True]}}, 400, "not exactly INT64"),
        ({"features": ["txn:amount"], "entities": {"merchant_id": ["a"]}}, 400, "join key 'customer_id'"),
        ({"features": ["txn:amount"], "entities": {"customer_id": [1, 2], "x": [1]}}, 400, "same number"),
        ({"features": ["txn:amount"], "entities": [1]}, 400, "entities must be an object"),
        ({"features": FEATURES, "entities": {"customer_id": [1]}}, 400, "request data pay"),
        ({"features": ["txn:nope"], "entities": {"customer_id": [1]}}, 400, "nope"),
        ({"features": ["nope:amount"], "entities": {"customer_id": [1]}}, 404, "nope"),
        ({"feature_service": "nope", "entities": {"customer_id": [1]}}, 404, "nope"),
        ({"entities": {"customer_id": [1]}}, 400, "neither feature_service nor features"),
        ({"features": "txn:amount", "entities": {"customer_id": [1]}}, 400, "list"),
        ({"features": ["txn:amount"], "entities": {"customer_id": list(range(1001))}}, 413, "at most 1000"),
        (b"x" * (1 << 20 + 1), 413, "over"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(repo, body, status, words):
    app = make_app(repo.store)
    got, _, out = request(app, "POST", "/get-online-features", body)
    assert got == status, out
    assert words in out["detail"], out


def test_wrong_method_and_unknown_path(repo):
    app = make_app(repo.store)
    assert request(app, "GET", "/get-online-features")[0] == 405
    assert request(app, "GET", "/nope")[0] == 404
    assert request(app, "GET", "/health")[0] == 200


def _statuses(body) -> set[str]:
    return {s for r in body["results"][1:] for s in r["statuses"]}


def test_redis_down_answers_invalid_statuses_then_the_breaker_fails_fast(store_on):
    app = make_app(store_on(f"redis://127.0.0.1:{free_port()}/0"), breaker_failures=3, breaker_reset_s=60)
    for _ in range(3):
        status, headers, body = request(app, "POST", "/get-online-features", _body())
        assert status == 200, body
        assert _statuses(body) == {"INVALID"}
        assert set(headers["x-fs-degraded"].split(",")) == {"txn", "profile", "pay_vs_amount"}
        assert body["results"][0]["values"] == [1, 2]  # the entity column is still answered
    t0 = time.perf_counter()
    status, _, body = request(app, "POST", "/get-online-features", _body())
    assert status == 200 and _statuses(body) == {"INVALID"}
    assert time.perf_counter() - t0 < 0.05  # breaker open: no connection attempt
    assert request(app, "GET", "/ready")[0] == 503


def test_hung_redis_is_cut_at_the_deadline_and_recovery_follows_its_return(private_redis, store_on):
    store = store_on(private_redis.url)
    app = make_app(store, deadline_ms=80, breaker_failures=2, breaker_reset_s=0.3)
    repo_rows = {"customer_id": [1], "pay": [1.0]}

    async def scenario():
        status, _, raw = await call(app, "POST", "/get-online-features", _body(repo_rows))
        assert status == 200 and "INVALID" not in _statuses(
            orjson.loads(raw)
        )  # empty private Redis: NOT_FOUND
        private_redis.proc.send_signal(signal.SIGSTOP)
        took = []
        for _ in range(4):
            t0 = time.perf_counter()
            status, _, raw = await call(app, "POST", "/get-online-features", _body(repo_rows))
            took.append(time.perf_counter() - t0)
            assert status == 200 and _statuses(orjson.loads(raw)) == {"INVALID"}
        assert max(took) < 0.5, took  # the deadline (80 ms), not Redis's 1 s socket timeout x retries
        assert app.breaker.state.name == "OPEN"
        private_redis.proc.send_signal(signal.SIGCONT)
        back = time.perf_counter()
        while True:
            status, _, raw = await call(app, "POST", "/get-online-features", _body(repo_rows))
            if "INVALID" not in _statuses(orjson.loads(raw)):
                break
            assert time.perf_counter() - back < 2.0, "not recovered within 2 s of Redis's return"
            await asyncio.sleep(0.05)

    asyncio.run(scenario())


def test_a_full_worker_sheds_with_503_and_retry_after(private_redis, store_on):
    app = make_app(store_on(private_redis.url), max_inflight=2, deadline_ms=500, breaker_failures=100)
    private_redis.proc.send_signal(signal.SIGSTOP)  # every read now waits for the deadline

    async def scenario():
        slow = [asyncio.ensure_future(call(app, "POST", "/get-online-features", _body())) for _ in range(2)]
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        status, headers, raw = await call(app, "POST", "/get-online-features", _body())
        shed_in = time.perf_counter() - t0
        done = await asyncio.gather(*slow)
        return status, headers, raw, shed_in, done

    status, headers, raw, shed_in, done = asyncio.run(scenario())
    assert status == 503 and headers["retry-after"] == "1", raw
    assert shed_in < 0.05  # refused at once, not queued behind the slow ones
    assert [d[0] for d in done] == [200, 200]
    os.kill(private_redis.proc.pid, signal.SIGCONT)


def test_a_corrupt_row_fails_only_its_view(repo):
    from fs_platform.plugins.redis_store.fast_read import FastReader

    reader = FastReader(repo.store, ["txn:amount", "profile:country"])
    request_ = reader.prepare({"customer_id": [1, 2]})
    txn = [r.view_name for r in reader._plan.reads].index("txn")
    key = request_.keys[txn * 2]  # customer 1's txn row
    client = redis.Redis.from_url(repo.online["url"])
    stored = client.get(key)
    client.set(key, b"[1,0,{not json")
    try:
        app = make_app(repo.store)
        status, headers, body = request(
            app,
            "POST",
            "/get-online-features",
            {"features": ["txn:amount", "profile:country"], "entities": {"customer_id": [1, 2]}},
        )
    finally:
        client.set(key, stored)
    assert status == 200 and headers["x-fs-degraded"] == "txn"
    by_name = dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))
    assert by_name["amount"]["statuses"] == ["INVALID", "INVALID"]
    assert by_name["country"]["statuses"] == ["PRESENT", "PRESENT"]
