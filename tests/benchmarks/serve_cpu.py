"""CPU time per request of the feature servers' handlers, measured in-process.

Each ASGI app (``fs serve``'s ``ServeApp``, Feast's FastAPI app from ``feast.feature_server.get_app``,
the floor) is called directly on one uvloop event loop with a prebuilt request, one request after
another or from several concurrent clients (no HTTP server, no sockets, no load generator).
``time.process_time`` counts this process's CPU in every thread (Feast hands work to a thread pool)
and not Redis's. CPU time depends much less on what else the machine runs than requests/s and
latency do; the rest of the disturbance is evened out by measuring in 10 rounds that take every app
in turn and keeping each app's least disturbed round. The HTTP parsing and socket work of a real
server (uvicorn, httptools) is the same for every app and not counted here.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

import uvloop

ROUNDS = 10


def scope(path: str = "/get-online-features", body: bytes = b"") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 6566),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


class _Case:
    """One app answering one prebuilt request, from ``concurrency`` clients at once."""

    def __init__(self, app, body: bytes, check: Callable[[int, bytes], bool] | None, concurrency: int):
        self.app, self.check, self.concurrency = app, check, concurrency
        self.scope = scope(body=body)
        self.message = {"type": "http.request", "body": body, "more_body": False}
        self.out: dict = {}
        self.best = (float("inf"), float("inf"))

    async def receive(self):
        return self.message

    async def send(self, m):
        if m["type"] == "http.response.start":
            self.out["status"] = m["status"]
        else:
            self.out["body"] = m.get("body", b"")

    async def stream(self, k: int) -> None:  # one client, one request after another
        for _ in range(k):
            await self.app(dict(self.scope), self.receive, self.send)

    async def warm(self, k: int) -> None:  # caches, plans and connections
        await self.stream(k)
        if self.check is not None and not self.check(self.out["status"], self.out["body"]):
            raise RuntimeError(
                f"{type(self.app).__name__} answered {self.out['status']}: {self.out['body'][:300]!r}"
            )

    async def round(self, k: int) -> None:
        each = max(1, k // self.concurrency)
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*[self.stream(each) for _ in range(self.concurrency)])
        done = each * self.concurrency
        self.best = min(self.best, ((time.process_time() - cpu) / done, (time.perf_counter() - wall) / done))


def cpu_per_request(cases: list[tuple], requests: int = 2000) -> dict:
    """``{key: (CPU seconds, wall seconds) per request}`` for ``cases`` of ``(key, app, body, check,
    concurrency)``: ``app`` answering ``body`` about ``requests`` times from ``concurrency`` clients at
    once, all on one event loop (apps keep loop-bound Redis connections), in ``ROUNDS`` rounds that
    take every case in turn; per case the least disturbed round counts (another process's burst
    slows only some rounds). ``check(status, body)`` validates the last warm-up answer."""
    runs = {key: _Case(app, body, check, concurrency) for key, app, body, check, concurrency in cases}

    async def main():
        for case in runs.values():
            await case.warm(max(100, requests // 10))
        for _ in range(ROUNDS):
            for case in runs.values():
                await case.round(max(1, requests // ROUNDS))
        return {key: case.best for key, case in runs.items()}

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())
