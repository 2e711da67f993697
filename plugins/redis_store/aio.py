"""The async read's own Redis connection: one pipelined TCP connection per event loop (standalone).

redis.asyncio spends ~30-55 us of CPU on an MGET (connection pool checkout and release, command
packing per argument, its parser's buffering, retry and event bookkeeping) where the round trip itself
costs ~7-14 us. This connection writes each command as soon as it is asked for (commands of concurrent
requests are pipelined on the one connection), parses replies with hiredis and hands them to the
waiting callers in order. A caller that gives up (deadline) leaves its future behind: its reply is
read and dropped, so the connection stays in step.

Same behaviour as the client it replaces: the client's host, port, db and credentials (AUTH and SELECT
on connect); connect timeout; a read waits at most ``socket_timeout`` (or until the caller's
deadline); a lost connection or timeout is retried on a new connection with the client's backoff and
attempts (MGET is idempotent); errors are redis-py's exceptions (``translated`` maps them). A
connection that has sent nothing back for ``socket_timeout`` while replies are due is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import time

import hiredis
import redis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import Connection
from redis.backoff import ExponentialWithJitterBackoff


def supported(client) -> bool:
    """True if ``client`` (redis.asyncio) talks plain TCP to one server (not TLS, a Unix socket, Cluster
    or Sentinel): the connections this module replaces."""
    pool = getattr(client, "connection_pool", None)
    return pool is not None and pool.connection_class is Connection


def server_of(client) -> dict:
    """Where a redis.asyncio ``client`` connects: host, port, db, username and password."""
    kw = client.connection_pool.connection_kwargs
    return {
        "host": kw.get("host", "localhost"),
        "port": int(kw.get("port", 6379)),
        "db": int(kw.get("db") or 0),
        "username": kw.get("username"),
        "password": kw.get("password"),
    }


def pack_command(args: tuple[bytes, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def handshake(username: str | None, password: str | None, db: int) -> list[bytes]:
    """The commands a new connection sends first: AUTH (with a password), SELECT (db other than 0)."""
    out = []
    if password is not None:
        user = (username.encode(),) if username else ()
        out.append(pack_command((b"AUTH", *user, password.encode())))
    if db:
        out.append(pack_command((b"SELECT", str(db).encode())))
    return out


def pack_mget(keys: list[str]) -> bytes:
    out = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
    for k in keys:
        kb = k.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(kb), kb))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.unsent: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.heard = time.monotonic()  # last reply, or when the queue of due replies last started

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        self.heard = time.monotonic()
        while waiting:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                self._fail(redis.ConnectionError(f"protocol error: {e}"))
                return
            if reply is False:
                return
            future = waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc) -> None:
        self._fail(redis.ConnectionError(f"connection lost{f': {exc}' if exc else ''}"))

    def _fail(self, error: Exception) -> None:
        self.lost = error
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, payload: bytes) -> asyncio.Future:
        if not self.waiting:
            self.heard = time.monotonic()
        future = self.loop.create_future()
        self.waiting.append(future)
        if not self.unsent:  # one write per loop iteration for every command asked for in it
            self.loop.call_soon(self._flush)
        self.unsent.append(payload)
        return future

    def _flush(self) -> None:
        unsent, self.unsent = self.unsent, []
        if self.lost is None:
            self.transport.writelines(unsent)


def _timed_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(redis.TimeoutError("Timeout reading from socket"))


class PipelinedConnection:
    """One pipelined connection to a standalone server, for the loop it was created on."""

    def __init__(self, client, cfg):
        server = server_of(client)
        self.host, self.port, self.db = server["host"], server["port"], server["db"]
        self.username, self.password = server["username"], server["password"]
        self.socket_timeout = cfg.socket_timeout_s
        self.connect_timeout = cfg.connect_timeout_s
        self.attempts = cfg.retry_attempts + 1
        self.backoff = ExponentialWithJitterBackoff(
            cap=cfg.retry_backoff_cap_s, base=cfg.retry_backoff_base_s
        )
        self.loop = asyncio.get_running_loop()
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def mget(self, keys: list[str], deadline: float | None = None) -> list:
        """MGET ``keys``; ``deadline`` in loop time (``loop.time()``) bounds the whole call, retries
        included: past it, the builtin ``TimeoutError``."""
        payload = pack_mget(keys)
        failures = 0
        while True:
            try:
                proto = self._proto
                if proto is None or proto.lost is not None:
                    proto = await self._connect(deadline)
                reply = await self._wait(proto, proto.send(payload), deadline)
            except redis.AuthenticationError:
                raise
            except (redis.ConnectionError, redis.TimeoutError):
                if deadline is not None and self.loop.time() >= deadline:
                    raise TimeoutError("online store read past the deadline") from None
                failures += 1
                pause = self.backoff.compute(failures)
                if failures >= self.attempts or (
                    deadline is not None and self.loop.time() + pause >= deadline
                ):
                    raise
                await asyncio.sleep(pause)
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise BaseParser.parse_error(str(reply))
            return reply

    async def _wait(self, proto: _Protocol, future: asyncio.Future, deadline: float | None):
        loop = self.loop
        at = loop.time() + self.socket_timeout if self.socket_timeout else None
        if deadline is not None and (at is None or deadline < at):
            at = deadline
        timer = loop.call_at(at, _timed_out, future) if at is not None else None
        try:
            return await future
        except redis.TimeoutError:
            # Silent for a whole socket timeout while replies are due: the server or the path is gone.
            if self.socket_timeout and time.monotonic() - proto.heard >= self.socket_timeout:
                proto._fail(redis.ConnectionError("no reply within the socket timeout"))
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _connect(self, deadline: float | None) -> _Protocol:
        if self._connecting is None:
            self._connecting = self.loop.create_task(self._open())
            # Callers that gave up (deadline) leave its failure unread: mark it read, it is raised to the
            # callers that wait for it.
            self._connecting.add_done_callback(lambda t: t.cancelled() or t.exception())
        connecting = self._connecting
        try:
            if deadline is None:
                return await asyncio.shield(connecting)
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(connecting)
        except TimeoutError:
            raise redis.TimeoutError("Timeout connecting to server") from None
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await self.loop.create_connection(_Protocol, self.host, self.port)
                hello = [proto.send(c) for c in handshake(self.username, self.password, self.db)]
                for reply in [await f for f in hello]:
                    if isinstance(reply, hiredis.ReplyError):
                        proto._fail(redis.ConnectionError("handshake failed"))
                        raise BaseParser.parse_error(str(reply))
        except TimeoutError:
            raise redis.TimeoutError("Timeout connecting to server") from None
        except OSError as e:
            raise redis.ConnectionError(f"Error connecting to {self.host}:{self.port}: {e}") from None
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abort()
        self._proto = proto
        return proto

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None and not self.loop.is_closed():
            self._proto.transport.close()
        self._proto = None
