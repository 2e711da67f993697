"""``fs serve``'s HTTP/1.1 server: an asyncio protocol with the httptools parser that calls
``ServeApp.handle`` directly.

Why not uvicorn: on this machine its per-request machinery (ASGI scope, receive/send messages, the
cycle object) cost more than fs serve's own work, so the HTTP layer capped throughput at 1 entity (a
trivial endpoint: 2.1x the requests/s at 1 connection here, ~10x at 8). What a scoring client needs is
kept: keep-alive, pipelined requests answered in order, Content-Length or chunked bodies,
``Expect: 100-continue``, TLS. So are the limits that keep a worker safe: header bytes (431), body bytes
(413), a request that has not fully arrived within the request deadline (408), idle keep-alive
connections closed after ``KEEP_ALIVE_S``, malformed requests (400); each of these closes the connection.
The timeouts are enforced by one sweep per worker (every ``SWEEP_S``), not a timer per request.
Not supported: protocol upgrades (websockets, h2c).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import signal
import ssl
import time
import traceback
from http import HTTPStatus

import httptools
import orjson
from prometheus_client import Counter

from fs_platform.observability import REGISTRY

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 5.0
SWEEP_S = 0.05
MAX_HEADER_BYTES = 64 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}

REJECTED = Counter(
    "fs_serve_rejected_total",
    "Requests the HTTP layer answered itself and closed (malformed, too large, too slow).",
    ["status"],
    registry=REGISTRY,
)


class _Reject(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class _Request:
    __slots__ = ("start", "url", "headers", "header_bytes", "method", "chunks", "size", "keep_alive")

    def __init__(self, start: float):
        self.start = start
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.method = "GET"
        self.chunks: list[bytes] = []
        self.size = 0
        self.keep_alive = True


class Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them one after another, in order."""

    def __init__(self, server: HttpServer):
        self.server = server
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.partial: _Request | None = None  # a request whose bytes are still arriving
        self.queue: collections.deque[_Request] = collections.deque()  # complete, not yet answered
        self.busy = False
        self.last_active = time.monotonic()
        self.reading_paused = False
        self.writable: asyncio.Future | None = None  # set while the client is not reading our answers
        self.task: asyncio.Task | None = None  # the answering task (held: the loop keeps only weak refs)

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        self.queue.clear()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except _Reject as e:
            self.reject(e.status, e.detail)
        except httptools.HttpParserUpgrade:
            self.reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):  # raised inside a parser callback
                self.reject(cause.status, cause.detail)
            else:
                self.reject(400, "malformed HTTP request")

    # --- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.partial = _Request(self.last_active)

    def on_url(self, url: bytes) -> None:
        req = self.partial
        req.url += url
        req.header_bytes += len(url)
        if req.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431, "request line and headers over 64 KiB")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.partial
        req.header_bytes += len(name) + len(value)
        if req.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431, "request line and headers over 64 KiB")
        req.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        req = self.partial
        if self.parser.should_upgrade():  # else the parser stops at this message
            raise _Reject(400, "protocol upgrades are not supported")
        req.method = self.parser.get_method().decode("latin-1")
        req.keep_alive = self.parser.should_keep_alive()
        limit = self.app.settings.max_body_bytes
        for name, value in req.headers:
            if name == b"content-length" and value.strip().isdigit() and int(value) > limit:
                raise _Reject(413, f"request body over {limit} bytes")
            if name == b"expect" and value.lower() == b"100-continue" and not self.busy and not self.queue:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        req = self.partial
        req.size += len(body)
        if req.size > self.app.settings.max_body_bytes:
            raise _Reject(413, f"request body over {self.app.settings.max_body_bytes} bytes")
        req.chunks.append(body)

    def on_message_complete(self) -> None:
        req, self.partial = self.partial, None
        if self.busy:
            self.queue.append(req)
            if not self.reading_paused:  # pipelined: take no more until these are answered
                self.reading_paused = True
                self.transport.pause_reading()
        else:
            self.busy = True
            self.server.ready(self, req)

    # --- answering -----------------------------------------------------------------------------
    def answer(self, req: _Request, direct: bool) -> None:
        if direct and req.url.startswith(b"/get-online-features"):
            self.task = run_eagerly(self._answer(req, True))
        else:
            self.task = asyncio.get_running_loop().create_task(self._answer(req, False))

    async def _answer(self, req: _Request, direct: bool) -> None:
        while req is not None:
            path = req.url.split(b"?", 1)[0].decode("latin-1")
            body = req.chunks[0] if len(req.chunks) == 1 else b"".join(req.chunks)
            try:
                status, headers, out = await self.app.handle(
                    req.method, path, req.headers, body, req.start, direct
                )
            except Exception as e:  # a bug: answer 500 without the message (it may hold request values)
                frame = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{frame.filename}:{frame.lineno}"
                log.error("fs serve: internal error %s at %s", type(e).__name__, where)
                out = b'{"detail":"internal error"}'
                status = 500
                headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
            if self.transport.is_closing():
                return
            keep = req.keep_alive and not self.server.draining
            self._write(status, headers, b"" if req.method == "HEAD" else out, keep)
            if not keep:
                self.transport.close()
                return
            if self.writable is not None:  # the client is not reading: wait before taking more
                await self.writable
            req = self.queue.popleft() if self.queue else None
            direct = False
        self.busy = False
        self.last_active = time.monotonic()
        if self.reading_paused and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()

    def _write(self, status: int, headers: list, body: bytes, keep_alive: bool) -> None:
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
        parts.extend(name + b": " + value + b"\r\n" for name, value in headers)
        parts.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        parts.append(body)
        self.transport.write(b"".join(parts))

    def reject(self, status: int, detail: str) -> None:
        """Answer a request the HTTP layer cannot pass on, and close (its remaining bytes are unread)."""
        REJECTED.labels(str(status)).inc()
        if not self.transport.is_closing():
            if not self.busy:  # else the answer to an earlier request is still to come: just close
                out = orjson.dumps({"detail": detail})
                headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
                self._write(status, headers, out, keep_alive=False)
            self.transport.close()
        self.partial = None

    def sweep(self, now: float, deadline_s: float) -> None:
        if self.partial is not None:
            if now - self.partial.start > deadline_s:
                self.reject(408, "request not received within the deadline")
        elif not self.busy and (self.server.draining or now - self.last_active > KEEP_ALIVE_S):
            self.transport.close()


def run_eagerly(coro) -> asyncio.Task | None:
    """Run ``coro`` now, up to its first suspension; a task finishes it only if it suspends (what
    Python 3.12's eager tasks do). A request answered without waiting costs no task and no loop
    iteration. Unlike a task's steps, the first one has no ``current_task()``: ``asyncio.timeout``
    and the like must come after a suspension (``await asyncio.sleep(0)``)."""
    context = contextvars.copy_context()  # one context for both parts, as a task has
    try:
        blocker = context.run(coro.send, None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_resume(coro, blocker), context=context)


async def _resume(coro, blocker):
    """Drive ``coro`` from where ``run_eagerly`` left it, as a task's steps would."""
    while True:
        error = None
        try:
            if blocker is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:
                blocker._asyncio_future_blocking = False  # taken, as a task takes what its coroutine yields
                await blocker
        except BaseException as e:
            if blocker is None or not blocker.done():
                error = e  # aimed at this task (cancelled): pass it on, as Task does
            # else the coroutine takes the outcome from the future itself
        try:
            blocker = coro.throw(error) if error is not None else coro.send(None)
        except StopIteration as done:
            return done.value


class HttpServer:
    """One worker's listener and its connections.

    Complete requests are answered from one callback per loop iteration (``_dispatch``). When it holds
    a single request and no other is in progress, the worker has nothing else to do: that request
    reads Redis directly (``ServeApp.handle(direct=True)``) and is answered within the callback.
    Otherwise every request starts at once and their Redis reads share one pipelined write."""

    def __init__(self, app):
        self.app = app
        self.connections: set[Connection] = set()
        self.draining = False
        self._ready: list[tuple[Connection, _Request]] = []
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task | None = None

    def ready(self, conn: Connection, req: _Request) -> None:
        if not self._ready:
            asyncio.get_running_loop().call_soon(self._dispatch)
        self._ready.append((conn, req))

    def _dispatch(self) -> None:
        ready, self._ready = self._ready, []
        direct = len(ready) == 1 and self.app.inflight == 0 and self.app.settings.direct_reads
        for conn, req in ready:
            if not conn.transport.is_closing():
                conn.answer(req, direct)

    async def start(self, sock, tls=None) -> None:
        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.certfile, tls.keyfile)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), sock=sock, ssl=context, backlog=2048
        )
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        deadline_s = self.app.settings.deadline_ms / 1000
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.sweep(now, deadline_s)

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let the requests in flight finish (closing each connection after its answer),
        close idle connections, and after ``grace_s`` close whatever is left."""
        self.draining = True
        self.app.draining = True
        self._server.close()
        for conn in list(self.connections):
            conn.sweep(time.monotonic(), float("inf"))
        end = time.monotonic() + grace_s
        while self.connections and time.monotonic() < end:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.transport.abort()
        self._sweeper.cancel()
        await self.app.shutdown()


def run_worker(app, sock, settings) -> int:
    """A worker process's life: serve ``sock`` until SIGTERM/SIGINT, then drain within the grace period."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = HttpServer(app)
        await server.start(sock, settings.tls)
        app.startup()
        await stop.wait()
        await server.stop(settings.shutdown_grace_s)

    uvloop.run(main())
    return 0
