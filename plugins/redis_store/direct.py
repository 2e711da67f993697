"""A blocking MGET for the moments a server worker has nothing else to do.

With one request in flight, the pipelined asyncio read (``aio.py``) pays for a future, a loop
iteration to write the command and one to resume the caller: more than the Redis round trip itself.
``DirectConnection.mget`` writes the command on its own socket and waits for the reply in the calling
thread, so the request is answered within the loop callback that received it. It waits by polling the
socket without blocking for up to ``SPIN_S`` (a reply on a local network arrives within tens of
microseconds, and a thread that went to sleep pays the wake-up on top), then blocks on it with a
timeout.

It never raises and never retries: any error, error reply or timeout closes the connection (a late
reply would put it out of step) and returns None; the caller then reads through the pipelined path,
which has the retries, the backoff and the error reporting. (Re)connecting runs on a thread, at most
once per ``RECONNECT_S``, so the event loop never waits on a connect; until it is up, ``mget`` returns
None. Requests whose command is over ``MAX_PAYLOAD`` (about 1,000 keys) are left to the pipelined
path. Standalone Redis over plain TCP only (``aio.supported``), after the fork (one per process).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time

import hiredis

from fs_platform.plugins.redis_store.aio import handshake

SPIN_S = 100e-6
RECONNECT_S = 1.0
MAX_PAYLOAD = 64 * 1024


class DirectConnection:
    def __init__(self, host: str, port: int, db: int, username, password, connect_timeout: float):
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.connect_timeout = connect_timeout
        self.pid = os.getpid()
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._buf = bytearray(65536)
        self._poll = select.poll()
        self._connecting = False
        self._last_attempt = 0.0
        self._lock = threading.Lock()

    def mget(self, payload: bytes, timeout: float) -> list | None:
        """The reply to the packed MGET ``payload``, or None (not connected, failed, or no reply within
        ``timeout`` seconds)."""
        sock = self._sock
        if sock is None:
            self._reconnect_later()
            return None
        if len(payload) > MAX_PAYLOAD:  # more than a socket buffer may take at once
            return None
        try:
            sock.sendall(payload)
            reply = self._receive(sock, timeout)
        except (OSError, hiredis.ProtocolError):
            reply = None
        if type(reply) is not list:  # None (timeout, closed) or an error reply
            self.close()
            return None
        return reply

    def _receive(self, sock: socket.socket, timeout: float):
        reader, buf = self._reader, self._buf
        start = time.perf_counter()
        spin_until = start + min(SPIN_S, timeout)
        while True:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                now = time.perf_counter()
                if now < spin_until:
                    continue
                left = start + timeout - now
                if left <= 0 or not self._poll.poll(left * 1000):  # sleeps until the reply or timeout
                    return None
                continue
            if n == 0:
                return None
            reader.feed(buf, 0, n)
            reply = reader.gets()
            if reply is not False:
                return reply

    def _reconnect_later(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._connecting or now - self._last_attempt < RECONNECT_S:
                return
            self._connecting, self._last_attempt = True, now
        threading.Thread(target=self._connect, name="fs-redis-direct-connect", daemon=True).start()

    def _connect(self) -> None:
        sock = None
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = hiredis.Reader()
            hello = handshake(self.username, self.password, self.db)
            if hello:
                sock.sendall(b"".join(hello))
                for _ in hello:
                    reply = reader.gets()
                    while reply is False:
                        data = sock.recv(4096)
                        if not data:
                            raise ConnectionError("closed during the handshake")
                        reader.feed(data)
                        reply = reader.gets()
                    if isinstance(reply, hiredis.ReplyError):
                        raise ConnectionError("handshake refused")
            sock.setblocking(False)  # sends are small; a full buffer fails the read (the caller falls back)
            poll = select.poll()
            poll.register(sock, select.POLLIN)
            self._reader, self._poll = reader, poll
            self._sock, sock = sock, None
        except (OSError, hiredis.ProtocolError):
            pass  # the pipelined path reports the error; try again after RECONNECT_S
        finally:
            if sock is not None:
                sock.close()
            self._connecting = False

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
