"""Call an ASGI app in-process: one request, the whole response (no server, no sockets)."""

from __future__ import annotations

import asyncio
import json

import orjson


async def call(app, method: str, path: str, body=None, headers: dict | None = None, chunks: int = 1):
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    hdrs.append((b"content-length", str(len(raw)).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": hdrs}
    size = max(1, -(-len(raw) // chunks))
    parts = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    out = {}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            out["body"] = out.get("body", b"") + message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["headers"], out["body"]


def request(app, method, path, body=None, headers=None, chunks=1):
    status, hdrs, raw = asyncio.run(call(app, method, path, body, headers, chunks))
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = raw
    return status, hdrs, parsed
