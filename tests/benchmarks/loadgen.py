"""Load generators for HTTP benchmarks: wrk (closed loop, max throughput) and an open-loop
constant-rate generator (latency at a fixed request rate, coordinated omission corrected).

wrk keeps every connection busy, so it measures how much a server can do; it cannot say what the
latency is at a given rate. ``open_loop`` sends request i at ``t0 + i / rate`` whatever happened to
earlier ones and measures each latency from that scheduled time, so a stall shows up as the queue
it causes (as wrk2 does). It runs in this process on uvloop, with keep-alive connections.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.timeout))
end
"""


@dataclass
class Result:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    extra: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk(url: str, body: bytes, connections: int, seconds: float, threads: int = 1) -> Result:
    """``wrk`` POSTing ``body`` on ``connections`` keep-alive connections for ``seconds``."""
    if b"]]" in body:
        raise ValueError("body must not contain ']]' (Lua long string)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % body.decode())
        script = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-s",
                script,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        Path(script).unlink(missing_ok=True)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    n, dur_us, status_err, sock_err, p50, p99, p999, mx, _ = (int(x) for x in m.groups())
    return Result(n, dur_us / 1e6, status_err + sock_err, p50 / 1e3, p99 / 1e3, p999 / 1e3, mx / 1e3)


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response: status and body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if m:
        return status, await reader.readexactly(int(m.group(1)))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


async def _open_loop(
    host: str,
    port: int,
    path: str,
    body: bytes,
    rate: float,
    seconds: float,
    connections: int,
    check: Callable[[int, bytes], bool] | None,
    on_tick=None,
):
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    total = int(rate * seconds)
    latencies = np.full(total, np.nan)
    ok = np.zeros(total, dtype=bool)
    sent_at = np.zeros(total)
    queue: asyncio.Queue[int] = asyncio.Queue()
    clock = time.perf_counter  # uvloop's loop.time() has 1 ms resolution
    t0 = clock() + 0.05

    async def connection():
        reader = writer = None
        while True:
            i = await queue.get()
            if i < 0:
                break
            scheduled = t0 + i / rate
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
                writer.write(request)
                status, payload = await asyncio.wait_for(_response(reader), 5)
                ok[i] = check(status, payload) if check else status == 200
            except (TimeoutError, OSError, asyncio.IncompleteReadError, AttributeError, ValueError):
                if writer is not None:
                    writer.close()
                reader = writer = None
            latencies[i] = clock() - scheduled
            sent_at[i] = scheduled - t0

    workers = [asyncio.ensure_future(connection()) for _ in range(connections)]
    for i in range(total):
        delay = t0 + i / rate - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        if on_tick:
            on_tick(i / rate)
        queue.put_nowait(i)
    for _ in workers:
        queue.put_nowait(-1)
    await asyncio.gather(*workers)
    return latencies, ok, sent_at


def open_loop(
    url: str,
    body: bytes,
    rate: float,
    seconds: float,
    connections: int = 16,
    check: Callable[[int, bytes], bool] | None = None,
    on_tick=None,
) -> Result:
    """Requests at a fixed ``rate`` for ``seconds``; latency from each request's scheduled time.
    ``check(status, body)`` decides success (default: HTTP 200); ``on_tick(t)`` is called with the
    schedule time of each request (for fault injection at a point of the run)."""
    import uvloop

    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    lat, ok, sent_at = uvloop.run(
        _open_loop(host, port, path, body, rate, seconds, connections, check, on_tick)
    )
    ms = lat * 1e3
    result = Result(
        len(lat),
        seconds,
        int((~ok).sum()),
        float(np.nanpercentile(ms, 50)),
        float(np.nanpercentile(ms, 99)),
        float(np.nanpercentile(ms, 99.9)),
        float(np.nanmax(ms)),
    )
    result.extra["failed_at_s"] = sent_at[~ok].tolist()
    return result


def post_body(features: list[str], entities: dict) -> bytes:
    return json.dumps({"features": features, "entities": entities}, separators=(",", ":")).encode()


def wait_until_up(url: str, timeout_s: float = 90, proc: subprocess.Popen | None = None) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, OSError):
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"server at {url} did not come up") from None
            time.sleep(0.25)
