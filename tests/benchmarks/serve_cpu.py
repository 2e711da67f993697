"""CPU time per request of the feature servers' handlers, measured in-process.

Each ASGI app (``fs serve``'s ``ServeApp``, Feast's FastAPI app from ``feast.feature_server.get_app``,
the floor) is called directly on one uvloop event loop, one request after another (or from several
concurrent clients), with a prebuilt request, in 10 rounds of which the least disturbed (lowest CPU) counts (no HTTP server, no sockets, no load generator). ``time.process_time`` over the timed
requests counts this process's CPU in every thread (Feast hands work to a thread pool) and not Redis's.
CPU time hardly depends on what else the machine runs, unlike requests/s and latency, so the ratios
hold on a shared machine. The HTTP parsing and socket work a real server adds (uvicorn, httptools) is
the same for every app and not counted here.
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
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 6566),
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip


async def _run(app, body: bytes, requests: int, check: Callable[[int, bytes], bool] | None,
               concurrency: int = 1) -> tuple[float, float]:
    request_scope = scope(body=body)
    message = {"type": "http.request", "body": body, "more_body": False}
    out: dict = {}

    async def receive():
        return message

    async def send(m):
        if m["type"] == "http.response.start":
            out["status"] = m["status"]
        else:
            out["body"] = m.get("body", b"")

    async def stream(k: int) -> None:  # one of ``concurrency`` clients, one request after another
        for _ in range(k):
            await app(dict(request_scope), receive, send)

    for _ in range(max(100, requests // 10)):  # warm caches, plans and connections
        await app(dict(request_scope), receive, send)
    if check is not None and not check(out["status"], out["body"]):
        raise RuntimeError(f"{type(app).__name__} answered {out['status']}: {out['body'][:300]!r}")
    best = (float("inf"), float("inf"))
    per_round = max(1, requests // ROUNDS)
    for _ in range(ROUNDS):  # the least disturbed round: another process's burst only slows some rounds
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        if concurrency == 1:
            for _ in range(per_round):
                await app(dict(request_scope), receive, send)
        else:
            await asyncio.gather(*[stream(per_round // concurrency) for _ in range(concurrency)])
        best = min(best, ((time.process_time() - cpu) / per_round, (time.perf_counter() - wall) / per_round))
    return best


def cpu_per_request(cases: list[tuple], requests: int = 2000) -> dict:
    """``{key: (CPU seconds, wall seconds) per request}`` for ``cases`` of ``(key, app, body, check,
    concurrency)``: ``app`` answering ``body`` ``requests`` times from ``concurrency`` clients at once,
    all on one event loop (apps keep loop-bound Redis connections); ``check(status, body)`` validates
    the last warm-up answer."""

    async def main():
        return {key: await _run(app, body, requests, check, concurrency)
                for key, app, body, check, concurrency in cases}

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())
