"""The HTTP edges of ``fs serve``'s request path: ``HttpError`` (what a request is answered with when it
cannot be served), reading a request body within its size limit, and deadlines in event-loop time."""

from __future__ import annotations

import asyncio
import time


class HttpError(Exception):
    def __init__(self, status: int, detail: str, headers: list | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or []


def loop_time(deadline_monotonic: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline_monotonic - time.monotonic())


async def read_body(scope, receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise HttpError(413, f"request body over {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(499, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
