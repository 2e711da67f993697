"""Direct Redis reads: a worker with one request and nothing else in progress reads Redis within the
loop callback (plugins/redis_store/direct.py) and answers without a task (http_server.run_eagerly).

Checked: ``run_eagerly`` behaves as a task would (results, errors, timeouts, context, cancellation);
the direct connection returns what MGET returns, connects off the loop, and gives up (None, connection
closed) on a refused handshake, a missing server and a hung one; over HTTP, sequential requests are
read directly and answer byte for byte what the pipelined read answers, a request arriving while
another is in progress is not, and a Redis that hangs or restarts under direct reads gives INVALID
within the deadline and recovers, as with the pipelined read."""

from __future__ import annotations

import asyncio
import contextvars
import json
import signal
import socket
import threading
import time

import pytest
import redis

from fs_platform.plugins.redis_store import aio
from fs_platform.plugins.redis_store.direct import DirectConnection
from fs_platform.plugins.serving import metrics
from fs_platform.plugins.serving.app import ServeApp
from fs_platform.plugins.serving.http_server import run_eagerly
from tests.plugins.serving.conftest import MACHINE_URL, free_port, make_app
from tests.plugins.serving.test_http_server import Running, post, read_response

FEATURES = ["txn:amount", "profile:country", "pay_vs_amount:pay_ratio"]
VAR = contextvars.ContextVar("var", default="unset")


# --- run_eagerly -----------------------------------------------------------------------------------
def test_a_coroutine_that_does_not_wait_finishes_in_the_call_without_a_task():
    async def main():
        seen = []

        async def answer():
            seen.append(asyncio.current_task())
            return 1

        result = asyncio.get_running_loop().create_future()
        # from a loop callback, as the HTTP server's dispatch calls it
        asyncio.get_running_loop().call_soon(lambda: result.set_result(run_eagerly(answer())))
        assert await result is None
        assert seen == [None]  # ran in the callback, no task made

    asyncio.run(main())


def test_a_coroutine_that_waits_is_finished_by_a_task_as_a_task_would():
    async def main():
        loop = asyncio.get_running_loop()
        value, error = loop.create_future(), loop.create_future()

        async def answer():
            VAR.set("set in the eager step")
            got = await value  # suspends: the rest runs in a task
            with pytest.raises(KeyError):
                await error
            await asyncio.sleep(0)  # a bare yield
            try:
                async with asyncio.timeout(0.02):  # needs a current task: there is one now
                    await asyncio.sleep(5)
            except TimeoutError:
                timed_out = True
            return got, timed_out, VAR.get()

        task = run_eagerly(answer())
        assert task is not None and not task.done()
        loop.call_later(0.01, value.set_result, 42)
        loop.call_later(0.02, error.set_exception, KeyError("x"))
        assert await asyncio.wait_for(task, 5) == (42, True, "set in the eager step")

    asyncio.run(main())


def test_cancelling_the_finishing_task_raises_in_the_coroutine():
    async def main():
        cleaned = asyncio.Event()

        async def answer():
            try:
                await asyncio.sleep(5)
            finally:
                cleaned.set()

        task = run_eagerly(answer())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned.is_set()

    asyncio.run(main())


# --- DirectConnection against real servers ---------------------------------------------------------
def _connected(conn: DirectConnection, keys: list[str]) -> list:
    """Call ``mget`` until the background connect has finished (the first calls return None)."""
    deadline = time.monotonic() + 5
    while True:
        reply = conn.mget(aio.pack_mget(keys), 1.0)
        if reply is not None:
            return reply
        assert time.monotonic() < deadline, "the direct connection never connected"
        time.sleep(0.02)


def _direct(port: int, db: int = 9) -> DirectConnection:
    return DirectConnection("127.0.0.1", port, db, None, None, connect_timeout=1.0)


@pytest.mark.redis
def test_the_direct_read_returns_what_mget_returns_and_connects_off_the_caller():
    client = redis.Redis.from_url(MACHINE_URL)
    keys = [f"fs-direct-test:{i}" for i in range(300)]
    client.mset({k: f"value-{i}".encode() * (i % 7) for i, k in enumerate(keys) if i % 3})
    try:
        conn = _direct(6379)
        t0 = time.perf_counter()
        assert conn.mget(aio.pack_mget(keys), 1.0) is None  # not connected yet: the caller does not wait
        assert time.perf_counter() - t0 < 0.5
        assert _connected(conn, keys) == client.mget(keys)  # values, empty strings and missing keys
        big = "fs-direct-test:big"
        client.set(big, b"x" * 3_000_000)  # a reply over many reads
        assert conn.mget(aio.pack_mget([big, keys[1]]), 2.0) == client.mget([big, keys[1]])
        many = [f"fs-direct-test:{i:020d}" for i in range(3000)]  # over MAX_PAYLOAD: left to the pipeline
        assert conn.mget(aio.pack_mget(many), 1.0) is None and conn._sock is not None
        assert conn.mget(aio.pack_mget(keys[:3]), 1.0) == client.mget(keys[:3])
        conn.close()
    finally:
        client.delete(*keys, "fs-direct-test:big")


@pytest.mark.redis
def test_a_refused_handshake_or_no_server_never_connects_and_never_blocks():
    refused = _direct(6379, db=10_000)  # SELECT 10000: "DB index is out of range"
    nothing = _direct(free_port())
    for conn in (refused, nothing):
        for _ in range(20):
            t0 = time.perf_counter()
            assert conn.mget(aio.pack_mget(["k"]), 1.0) is None
            assert time.perf_counter() - t0 < 0.2  # connecting happens on a thread, not here
            time.sleep(0.01)
        assert conn._sock is None


def test_a_hung_server_gives_none_within_the_timeout_and_the_connection_is_dropped():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    conn = _direct(listener.getsockname()[1], db=0)  # db 0: no handshake, so it connects
    try:
        deadline = time.monotonic() + 5
        while conn._sock is None:
            conn.mget(aio.pack_mget(["k"]), 0.01)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t0 = time.perf_counter()
        assert conn.mget(aio.pack_mget(["k"]), 0.05) is None
        assert 0.04 < time.perf_counter() - t0 < 1.0
        assert conn._sock is None  # a late reply would put it out of step: dropped
    finally:
        listener.close()
        for s, _ in accepted:
            s.close()


# --- over HTTP -------------------------------------------------------------------------------------
def _body(customers):
    return json.dumps(
        {"features": FEATURES, "entities": {"customer_id": customers, "pay": [1.0] * len(customers)}}
    ).encode()


def _direct_reads() -> float:
    return metrics.DIRECT_READS._value.get()


@pytest.mark.redis
def test_sequential_requests_are_read_directly_and_answer_as_the_pipelined_read(repo):
    direct, pipelined = Running(make_app(repo.store)), Running(make_app(repo.store, direct_reads=False))
    try:
        answers = {}
        for name, server in (("direct", direct), ("pipelined", pipelined)):
            with server.connect() as s:
                s.sendall(post(_body([1])))  # warms the direct connection (connects in a thread)
                read_response(s)
                time.sleep(0.3)
                before = _direct_reads()
                out = []
                for customers in ([1], [2, 1], [3], [1, 2, 404]):
                    s.sendall(post(_body(customers)))
                    status, headers, body = read_response(s)
                    assert status == 200 and "x-fs-degraded" not in headers
                    out.append(body)
                answers[name] = (out, _direct_reads() - before)
        assert answers["direct"][0] == answers["pipelined"][0]
        assert answers["direct"][1] == 4 and answers["pipelined"][1] == 0
    finally:
        direct.stop()
        pipelined.stop()


@pytest.mark.redis
def test_a_request_arriving_while_another_is_in_progress_is_not_read_directly(repo, monkeypatch):
    app = make_app(repo.store)
    release = asyncio.Event()
    seen = []
    fetch = ServeApp._fetch

    async def recording(self, plan, request, deadline, direct=False):
        seen.append(direct)
        if len(seen) == 1:
            await release.wait()  # the first request stays in progress
        return await fetch(self, plan, request, deadline, direct)

    monkeypatch.setattr(ServeApp, "_fetch", recording)
    server = Running(app)
    try:
        with server.connect() as first, server.connect() as second:
            first.sendall(post(_body([1])))
            deadline = time.monotonic() + 5
            while not seen:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            second.sendall(post(_body([2])))
            while len(seen) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            server.loop.call_soon_threadsafe(release.set)
            assert read_response(first)[0] == 200 and read_response(second)[0] == 200
        assert seen == [True, False]
    finally:
        server.stop()


def _invalid(body: bytes) -> bool:
    return any("INVALID" in r["statuses"] for r in json.loads(body)["results"][1:])


@pytest.mark.redis
def test_a_hung_then_restarted_redis_under_direct_reads_gives_invalid_in_time_and_recovers(
    private_redis, store_on
):
    app = make_app(store_on(private_redis.url), deadline_ms=80, breaker_failures=2, breaker_reset_s=0.3)
    server = Running(app)
    try:
        with server.connect() as s:
            for _ in range(3):  # connects the direct socket
                s.sendall(post(_body([1])))
                status, _, body = read_response(s)
                assert status == 200 and not _invalid(body)
                time.sleep(0.2)
            before = _direct_reads()
            s.sendall(post(_body([1])))
            assert not _invalid(read_response(s)[2]) and _direct_reads() == before + 1

            private_redis.proc.send_signal(signal.SIGSTOP)
            for _ in range(4):
                t0 = time.perf_counter()
                s.sendall(post(_body([1])))
                status, _, body = read_response(s)
                assert status == 200 and _invalid(body)
                assert time.perf_counter() - t0 < 0.5  # the 80 ms deadline, not socket timeouts
            private_redis.proc.send_signal(signal.SIGCONT)

            private_redis.stop()  # and a restart: both connections are lost
            private_redis.start()
            back = time.perf_counter()
            while True:
                s.sendall(post(_body([1])))
                status, _, body = read_response(s)
                assert status == 200
                if not _invalid(body):
                    break
                assert time.perf_counter() - back < 2.0, "not recovered within 2 s of Redis's return"
                time.sleep(0.05)
            before = _direct_reads()
            deadline = time.monotonic() + 5
            while _direct_reads() == before:  # the direct socket reconnects (at most once a second)
                assert time.monotonic() < deadline, "direct reads did not resume after the restart"
                s.sendall(post(_body([1])))
                assert not _invalid(read_response(s)[2])
                time.sleep(0.1)
    finally:
        server.stop()
