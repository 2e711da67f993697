"""fs serve's HTTP layer over real sockets: keep-alive, pipelining in order, chunked and Content-Length
bodies, Expect: 100-continue, HTTP/1.0, and the limits (431, 413, 408, idle close, malformed 400),
a 500 that does not log request values, and a drain that finishes a request in flight."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import pytest

from fs_platform.plugins.serving import http_server
from fs_platform.plugins.serving.http_server import HttpServer
from tests.plugins.serving.conftest import make_app

pytestmark = pytest.mark.redis

BODY = json.dumps({"features": ["txn:amount"], "entities": {"customer_id": [1, 2]}}).encode()


def post(body: bytes = BODY, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST /get-online-features HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


class Running:
    """An HttpServer on its own event loop thread, on a free port."""

    def __init__(self, app):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.server = HttpServer(app)
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start(self.sock))
            self.loop.call_soon(app.startup)
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(10)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self, grace_s: float = 5.0) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace_s), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def read_response(s: socket.socket) -> tuple[int, dict, bytes]:
    """One response off the socket (Content-Length framed); raises EOFError on a closed connection."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    n = int(headers["content-length"])
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(rest)
        rest += chunk
    return status, headers, rest[:n]


def closed(s: socket.socket) -> bool:
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def server(repo):
    running = Running(make_app(repo.store, max_body_bytes=4096))
    yield running
    running.stop()


def test_keep_alive_answers_several_requests_on_one_connection(server):
    with server.connect() as s:
        for _ in range(3):
            s.sendall(post())
            status, headers, body = read_response(s)
            assert status == 200 and "connection" not in headers
            values = json.loads(body)["results"][1]["values"]
            assert len(values) == 2 and values[0] is not None


def test_pipelined_requests_are_answered_in_order(server):
    health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    missing = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    with server.connect() as s:
        s.sendall(post() + health + missing + post())
        statuses, data = [], b""
        s.settimeout(10)
        while data.count(b"HTTP/1.1 ") < 4 or not data.endswith(b"}"):
            data += s.recv(65536)
        for part in data.split(b"HTTP/1.1 ")[1:]:
            statuses.append(int(part[:3]))
    assert statuses == [200, 200, 404, 200]


def test_chunked_body_is_read_like_a_content_length_one(server):
    half = len(BODY) // 2
    chunked = (
        b"POST /get-online-features HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, BODY[:half], len(BODY) - half, BODY[half:])
    )
    with server.connect() as s:
        s.sendall(post())
        plain = json.loads(read_response(s)[2])
        s.sendall(chunked)
        status, _, body = read_response(s)
    assert status == 200 and json.loads(body)["results"] == plain["results"]


def test_expect_100_continue_and_http_1_0(server):
    with server.connect() as s:
        head, body = post(extra="Expect: 100-continue\r\n").split(b"\r\n\r\n", 1)
        s.sendall(head + b"\r\n\r\n")
        assert s.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert read_response(s)[0] == 200
    with server.connect() as s:
        s.sendall(post(version="1.0"))
        status, headers, _ = read_response(s)
        assert status == 200 and headers["connection"] == "close" and closed(s)


@pytest.mark.parametrize(
    "raw, status",
    [
        (post(b"x" * 5000), 413),  # Content-Length over max_body_bytes: refused before the body is read
        (
            b"POST /get-online-features HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1000\r\n"
            + b"x" * 4096
            + b"\r\n1000\r\n"
            + b"x" * 4096
            + b"\r\n0\r\n\r\n",
            413,
        ),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 400),
        (b"POST /get-online-features HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    ],
    ids=["content-length", "chunked", "headers", "garbage", "upgrade", "negative-length"],
)
def test_refused_requests_get_a_status_and_the_connection_closes(server, raw, status):
    with server.connect() as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before it has read everything we send
        got, headers, body = read_response(s)
        assert got == status, body
        assert headers["connection"] == "close" and json.loads(body)["detail"]
        assert closed(s)
    with server.connect() as s:  # the worker is unharmed
        s.sendall(post())
        assert read_response(s)[0] == 200


def test_a_request_that_stalls_gets_408_and_an_idle_connection_is_closed(repo, monkeypatch):
    monkeypatch.setattr(http_server, "KEEP_ALIVE_S", 0.3)
    running = Running(make_app(repo.store, deadline_ms=200.0))
    try:
        with running.connect() as s:
            s.sendall(post()[:-5])  # the body never completes
            t0 = time.monotonic()
            status, headers, body = read_response(s)
            assert status == 408 and closed(s)
            assert 0.2 <= time.monotonic() - t0 < 2.0
        with running.connect() as s:
            s.sendall(post())
            assert read_response(s)[0] == 200
            t0 = time.monotonic()
            assert closed(s)  # nothing more sent: closed once idle for KEEP_ALIVE_S
            assert 0.25 <= time.monotonic() - t0 < 2.0
    finally:
        running.stop()


def test_an_internal_error_is_a_500_whose_log_has_no_request_values(server, caplog):
    async def broken(method, path, headers, body, start, direct=False):
        raise ValueError(f"cannot use {body!r}")

    server.app.handle = broken
    with caplog.at_level(logging.ERROR, logger="fs_platform.plugins.serving.http_server"):
        with server.connect() as s:
            s.sendall(post())
            status, _, body = read_response(s)
    assert status == 500 and json.loads(body) == {"detail": "internal error"}
    assert "ValueError" in caplog.text and "customer_id" not in caplog.text


def test_stop_finishes_the_request_in_flight_and_closes_idle_connections(server):
    release = asyncio.Event()
    handle = server.app.handle

    async def slow(method, path, headers, body, start, direct=False):
        if path == "/get-online-features":
            await release.wait()  # suspends a direct (eager) answer too: a task finishes it
        return await handle(method, path, headers, body, start, direct)

    server.app.handle = slow
    busy, idle = server.connect(), server.connect()
    try:
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle)[0] == 200
        busy.sendall(post())
        time.sleep(0.2)
        stopping = asyncio.run_coroutine_threadsafe(server.server.stop(10), server.loop)
        assert closed(idle)
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            socket.create_connection(("127.0.0.1", server.port), timeout=2)
        server.loop.call_soon_threadsafe(release.set)
        status, headers, _ = read_response(busy)
        assert status == 200 and headers["connection"] == "close" and closed(busy)
        stopping.result(10)
        assert server.app.draining
    finally:
        busy.close()
        idle.close()
        server.server.stop = _already_stopped


async def _already_stopped(grace_s):  # the fixture's stop after the test stopped it itself
    return None
