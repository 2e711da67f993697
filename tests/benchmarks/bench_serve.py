"""Feature server benchmark: `fs serve` vs `feast serve` vs a floor ASGI app, same data, same run.

    .venv/bin/python tests/benchmarks/bench_serve.py [--quick] [--url redis://127.0.0.1:6379/9]
    .venv/bin/python tests/benchmarks/bench_serve.py --cpu-only   # CPU per request only: busy machine ok

Data: 10,000 customers, 5 features from 2 views (3 from ``txn``, 2 from ``profile``), written to
the machine's Redis twice: through fs's store and through Feast's stock Redis store (unique
projects, removed afterwards). Servers, each a subprocess on its own port, 2 workers where the
server has workers:

- ``fs serve``                     fs's server on fs's store (defaults, ``--workers 2``)
- ``feast serve (defaults)``       as a new user runs it: 1 worker, access log, recycled every ~1k requests
- ``feast serve tuned, fs store``  ``--no-access-log --max-requests 0 -w 2`` over fs's store
- ``feast serve tuned, stock``     the same over Feast's own Redis store
- ``floor``                        a minimal uvicorn app (2 workers): parse the JSON, one MGET of the
                                   fs keys, answer the number of hits. No decoding, no Feast: what
                                   any Python server doing this lookup costs.
- ``fs serve, pipelined reads``    fs serve with ``direct_reads: false``: what the direct reads add

Measurements: wrk (closed loop) at 1/8/32 connections x 1/20 entities; a fixed 1,000 requests/s
open loop for 60 s (latency from each request's scheduled time, so stalls count); a soak at 500
requests/s against a private redis-server that is SIGKILLed and restarted mid-run (errors only
while it is down, recovery time after it is back); before the servers start, each handler's CPU per
request in-process (serve_cpu.py: fs's app, Feast's app, the floor app on one event loop, 1 and 16
concurrent clients), the part that holds on a busy machine. wrk is installed with apt if missing.
Results go to the ``serve`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import redis
import yaml
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fs_platform.plugins.redis_store.keys import KeyLayout  # noqa: E402
from tests.benchmarks import loadgen, report, serve_cpu  # noqa: E402

BIN = Path(sys.executable).parent
N_ENTITIES = 10_000
NOW = datetime.now(UTC).replace(microsecond=0)
PIPELINED = "fs serve, pipelined reads"  # direct_reads: false (docs/serving.md)
FEATURES = ["txn:amount_sum", "txn:amount_mean", "txn:count", "profile:country", "profile:age"]

FLOOR_APP = """
import json, os
import orjson
import redis.asyncio as aioredis

AFFIXES = json.loads(os.environ["FLOOR_AFFIXES"])
URL = os.environ["FLOOR_URL"]
_client = None
_HEAD = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    global _client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/health":
        out = b"{}"
    else:
        if _client is None:  # per worker, after the fork
            _client = aioredis.Redis.from_url(URL, max_connections=64)
        ids = orjson.loads(body)["entities"]["customer_id"]
        keys = [f"{before}customer_id={i}{after}" for i in ids for before, after in AFFIXES]
        values = await _client.mget(keys)
        out = orjson.dumps({"hits": sum(v is not None for v in values)})
    await send({"type": "http.response.start", "status": 200,
                "headers": _HEAD + [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> None:
    if loadgen.wrk_available():
        return
    print("installing wrk (apt-get install -y wrk)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
    if not loadgen.wrk_available():
        raise SystemExit("wrk is not installed and apt-get could not install it: install wrk and rerun")


# --- data -----------------------------------------------------------------------------------------
def objects(tmp: Path):
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    rng = np.random.default_rng(5)
    ids = np.arange(1, N_ENTITIES + 1, dtype="int64")
    stamp = pd.Timestamp(NOW - timedelta(minutes=5))
    txn = pd.DataFrame(
        {
            "customer_id": ids,
            "amount_sum": rng.random(N_ENTITIES) * 500,
            "amount_mean": rng.random(N_ENTITIES) * 50,
            "count": rng.integers(0, 100, N_ENTITIES),
            "event_timestamp": stamp,
        }
    )
    profile = pd.DataFrame(
        {
            "customer_id": ids,
            "country": rng.choice(["DE", "FR", "US", "BR"], N_ENTITIES),
            "age": rng.integers(18, 90, N_ENTITIES),
            "event_timestamp": stamp,
        }
    )
    txn.to_parquet(tmp / "txn.parquet")
    profile.to_parquet(tmp / "profile.parquet")
    views = [
        FeatureView(
            name="txn",
            entities=[customer],
            ttl=timedelta(days=1),
            source=FileSource(
                name="txn_src", path=str(tmp / "txn.parquet"), timestamp_field="event_timestamp"
            ),
            schema=[
                Field(name="amount_sum", dtype=Float64),
                Field(name="amount_mean", dtype=Float64),
                Field(name="count", dtype=Int64),
            ],
        ),
        FeatureView(
            name="profile",
            entities=[customer],
            ttl=timedelta(days=1),
            source=FileSource(
                name="profile_src", path=str(tmp / "profile.parquet"), timestamp_field="event_timestamp"
            ),
            schema=[Field(name="country", dtype=String), Field(name="age", dtype=Int64)],
        ),
    ]
    return [customer, *views]


def make_repo(tmp: Path, name: str, online: dict, engine: dict | None, objs) -> Path:
    repo = tmp / name
    repo.mkdir()
    config = {
        "project": f"benchserve{name.replace('-', '')}{uuid.uuid4().hex[:6]}",
        "registry": str(repo / "registry.db"),
        "provider": "local",
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    if engine:
        config["batch_engine"] = engine
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    store = FeatureStore(repo_path=str(repo))
    store.apply(objs)
    store.materialize(NOW - timedelta(hours=1), NOW)
    return repo


def fs_online(url: str, prefix: str) -> dict:
    return {
        "type": "fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
        "url": url,
        "key_prefix": prefix,
    }


FS_ENGINE = {"type": "fs_platform.plugins.redis_store.engine.RedisArrowEngine"}


# --- servers --------------------------------------------------------------------------------------
class Server:
    def __init__(
        self, name: str, argv: list[str], port: int, env: dict | None = None, cwd: Path | None = None
    ):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}/get-online-features"
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"bench-serve-{name.split()[0]}-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            loadgen.wait_until_up(f"http://127.0.0.1:{port}/health", proc=self.proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{name} did not start: {Path(self.log.name).read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_servers(fs_repo: Path, stock_repo: Path, floor_env: dict, tmp: Path) -> list[Server]:
    (tmp / "floor_app.py").write_text(FLOOR_APP)
    (tmp / "pipelined.yaml").write_text("direct_reads: false\n")
    specs = [
        (
            "fs serve",
            lambda p: [str(BIN / "fs"), "--repo", str(fs_repo), "serve", "--port", str(p), "--workers", "2"],
            None,
        ),
        (
            "feast serve (defaults)",
            lambda p: [str(BIN / "feast"), "-c", str(fs_repo), "serve", "-p", str(p)],
            None,
        ),
        (
            "feast serve tuned, fs store",
            lambda p: [
                str(BIN / "feast"),
                "-c",
                str(fs_repo),
                "serve",
                "-p",
                str(p),
                "--no-access-log",
                "--max-requests",
                "0",
                "-w",
                "2",
            ],
            None,
        ),
        (
            "feast serve tuned, stock store",
            lambda p: [
                str(BIN / "feast"),
                "-c",
                str(stock_repo),
                "serve",
                "-p",
                str(p),
                "--no-access-log",
                "--max-requests",
                "0",
                "-w",
                "2",
            ],
            None,
        ),
        (
            "floor",
            lambda p: [
                str(BIN / "uvicorn"),
                "floor_app:app",
                "--port",
                str(p),
                "--workers",
                "2",
                "--no-access-log",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
            ],
            floor_env,
        ),
        (
            PIPELINED,
            lambda p: [
                str(BIN / "fs"),
                "--repo",
                str(fs_repo),
                "serve",
                "--port",
                str(p),
                "--workers",
                "2",
                "--config",
                str(tmp / "pipelined.yaml"),
            ],
            None,
        ),
    ]
    servers = []
    for name, argv, env in specs:
        port = free_port()
        print(f"starting {name} on {port}", flush=True)
        servers.append(Server(name, argv(port), port, env, cwd=tmp))
    return servers


# --- measurements ---------------------------------------------------------------------------------
def body(n: int, offset: int = 0) -> bytes:
    return loadgen.post_body(
        FEATURES, {"customer_id": [1 + (offset + i * 37) % N_ENTITIES for i in range(n)]}
    )


def check_served(status: int, payload: bytes) -> bool:
    """Every feature served: a view that could not be read is a 200 with status INVALID (degraded)."""
    return status == 200 and b"NOT_FOUND" not in payload and b"INVALID" not in payload


def closed_loop(servers: list[Server], seconds: float) -> dict:
    out = {}
    for entities in (1, 20):
        for conns in (1, 8, 32):
            for s in servers:
                r = loadgen.wrk(s.url, body(entities), conns, seconds)
                out[(s.name, entities, conns)] = r
                print(
                    f"{s.name:32s} {entities:>2} entities {conns:>2} conns: {r.rps:8.0f} rps  p50 "
                    f"{r.p50_ms:6.2f}  p99 {r.p99_ms:7.2f}  p99.9 {r.p999_ms:7.2f} ms  errors {r.errors}",
                    flush=True,
                )
    return out


def fixed_rate(servers: list[Server], rate: float, seconds: float) -> dict:
    out = {}
    for s in servers:
        check = check_served if s.name != "floor" else None
        r = loadgen.open_loop(s.url, body(1), rate, seconds, connections=32, check=check)
        out[s.name] = r
        print(
            f"{s.name:32s} {rate:.0f} rps for {seconds:.0f} s: p50 {r.p50_ms:.2f}  p99 {r.p99_ms:.2f}  "
            f"p99.9 {r.p999_ms:.2f}  max {r.max_ms:.1f} ms  errors {r.errors}",
            flush=True,
        )
    return out


def soak_with_redis_restart(tmp: Path, rate: float, seconds: float) -> dict:
    """fs serve on a private redis-server (AOF on) that is SIGKILLed at 1/3 of the run and restarted 3 s
    later."""
    rport = free_port()
    rdir = tmp / "redis-soak"
    rdir.mkdir()
    argv = [
        "redis-server",
        "--port",
        str(rport),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--dir",
        str(rdir),
        "--logfile",
        str(rdir / "redis.log"),
    ]
    state = {"proc": subprocess.Popen(argv)}
    url = f"redis://127.0.0.1:{rport}/0"
    for _ in range(100):
        try:
            if redis.Redis.from_url(url).ping():
                break
        except redis.ConnectionError:
            time.sleep(0.05)
    repo = make_repo(tmp, "soak", fs_online(url, "soak"), FS_ENGINE, objects(tmp))
    redis.Redis.from_url(url).execute_command("BGREWRITEAOF")
    time.sleep(1)
    port = free_port()
    server = Server(
        "fs serve (soak)",
        [str(BIN / "fs"), "--repo", str(repo), "serve", "--port", str(port), "--workers", "2"],
        port,
    )
    kill_at, restart_at = seconds / 3, seconds / 3 + 3.0
    marks = {}

    def on_tick(t: float) -> None:
        if "kill" not in marks and t >= kill_at:
            state["proc"].kill()
            state["proc"].wait()
            marks["kill"] = t
        elif "restart" not in marks and t >= restart_at:
            state["proc"] = subprocess.Popen(argv)
            marks["restart"] = t

    try:
        r = loadgen.open_loop(
            server.url, body(1), rate, seconds, connections=32, check=check_served, on_tick=on_tick
        )
    finally:
        server.stop()
        state["proc"].terminate()
        state["proc"].wait()
    failed = np.array(r.extra["failed_at_s"])
    outside = (
        int(((failed < marks["kill"] - 0.01) | (failed > marks["restart"] + 2.0)).sum()) if failed.size else 0
    )
    recovery = (
        float(failed.max() - marks["restart"]) if failed.size and failed.max() > marks["restart"] else 0.0
    )
    print(
        f"soak: {r.errors} failed of {r.requests}, {outside} outside the outage, recovery {recovery:.2f} s "
        f"after restart, p99 {r.p99_ms:.2f} ms",
        flush=True,
    )
    return {
        "result": r,
        "outside": outside,
        "recovery_s": max(recovery, 0.0),
        "down_s": marks["restart"] - marks["kill"],
    }


CPU_CONCURRENCY = (1, 16)  # one client at a time; 16 at once (a loaded worker: Redis commands share writes)


def cpu_in_process(fs_repo: Path, floor_env: dict, requests: int) -> dict:
    """CPU us per request of each server's handler, in this process (serve_cpu.py): fs's ServeApp,
    Feast's FastAPI app (the handler every ``feast serve`` variant runs) and the floor app."""
    from feast.feature_server import get_app

    from fs_platform.plugins.serving.app import ServeApp
    from fs_platform.plugins.serving.settings import ServeSettings

    os.environ.update(floor_env)
    floor: dict = {}
    exec(compile(FLOOR_APP, "floor_app.py", "exec"), floor)
    fs_app = ServeApp(FeatureStore(repo_path=str(fs_repo)), ServeSettings(workers=1))
    fs_app.warm()
    feast_app = get_app(FeatureStore(repo_path=str(fs_repo)))
    apps = [
        ("fs serve", fs_app, check_served),
        ("feast serve", feast_app, check_served),
        ("floor", floor["app"], None),
    ]
    cases = [
        ((name, e, c), app, body(e), check, c)
        for c in CPU_CONCURRENCY
        for e in (1, 20)
        for name, app, check in apps
    ]
    out = {}
    for (name, entities, conc), (cpu, wall) in serve_cpu.cpu_per_request(cases, requests).items():
        out[(name, entities, conc)] = cpu * 1e6
        print(
            f"in-process {name:12s} {entities:>2} entities {conc:>2} clients: {cpu * 1e6:7.1f} us CPU/request"
            f" ({wall * 1e6:7.1f} us wall)",
            flush=True,
        )
    return out


def render_cpu(cpu: dict, requests: int) -> str:
    lines = [
        f"CPU per request in-process (`serve_cpu.py`: each app's ASGI handler called {requests:,} times on "
        "one uvloop loop by 1 or 16 concurrent clients, no HTTP server, the least disturbed of 10 rounds;"
        " `time.process_time`, so it holds on a busy machine; Redis's own CPU not counted; the floor reads"
        " through redis.asyncio, fs through its own pipelined connection (the ASGI entry never reads"
        " directly)):",
        "",
        "| entities | concurrent clients | fs serve us | feast serve us | floor us | feast / fs | fs / "
        "floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in CPU_CONCURRENCY:
        for e in (1, 20):
            fs, feast, floor = (cpu[(n, e, c)] for n in ("fs serve", "feast serve", "floor"))
            lines.append(
                f"| {e} | {c} | {fs:.0f} | {feast:.0f} | {floor:.0f} | **{feast / fs:.1f}x** |"
                f" {fs / floor:.2f}x |"
            )
    return "\n".join(lines)


# --- report ---------------------------------------------------------------------------------------
def render(
    closed: dict, fixed: dict, soak: dict, cpu: dict, seconds: float, rate_s: float, machine: str
) -> str:
    names = [
        "fs serve",
        "feast serve (defaults)",
        "feast serve tuned, fs store",
        "feast serve tuned, stock store",
        "floor",
        PIPELINED,
    ]
    lines = [
        "## Feature server (`fs serve`)",
        "",
        f"`tests/benchmarks/bench_serve.py`, {machine}. 10,000 customers, 5 features from 2 views, machine "
        "Redis 7;",
        "every server a subprocess with 2 workers (except `feast serve` defaults: 1 worker, access log,",
        "worker recycled every ~1,000 requests); wrk 1 thread on the same 2 cores. Floor: a minimal uvicorn",
        "app doing one MGET of the same keys and no decoding. `fs serve, pipelined reads`: fs serve with",
        "`direct_reads: false`, every Redis read on the pipelined connection (docs/serving.md). Closed loop",
        f"(wrk, {seconds:g} s per cell), measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC:",
        "",
        "| entities | conns | "
        + " | ".join(names)
        + " | fs / tuned feast (fs store) | fs p99 / floor p99 | fs / pipelined reads |",
        "|---|---|" + "---|" * len(names) + "---|---|---|",
    ]
    for entities in (1, 20):
        for conns in (1, 8, 32):
            cells = []
            for n in names:
                r = closed[(n, entities, conns)]
                err = f", {r.errors} err" if r.errors else ""
                cells.append(f"{r.rps:,.0f}/s p99 {r.p99_ms:.1f} ms{err}")
            fs, tuned, floor, pipelined = (
                closed[(n, entities, conns)] for n in (names[0], names[2], names[4], PIPELINED)
            )
            lines.append(
                f"| {entities} | {conns} | "
                + " | ".join(cells)
                + f" | **{fs.rps / tuned.rps:.1f}x** | {fs.p99_ms / floor.p99_ms:.2f}x"
                + f" | {fs.rps / pipelined.rps:.2f}x |"
            )
    lines += [
        "",
        f"Fixed rate, open loop (1,000 requests/s for {rate_s:g} s, 1 entity, latency from the scheduled send"
        " time, so a stall counts for every request queued behind it):",
        "",
        "| server | p50 ms | p99 ms | p99.9 ms | max ms | failed |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in fixed.items():
        lines.append(
            f"| {n} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.p999_ms:.2f} | {r.max_ms:.1f} | {r.errors} of "
            f"{r.requests} |"
        )
    s = soak["result"]
    lines += [
        "",
        f"Redis restart under load: `fs serve` at 500 requests/s for {s.seconds:g} s on a private "
        f"redis-server (AOF) SIGKILLed at 1/3 of the run and restarted {soak['down_s']:.1f} s later: "
        f"{s.errors} of {s.requests} requests failed, {soak['outside']} of them outside the outage (+2 s); "
        f"the last failure {soak['recovery_s']:.2f} s after the restart; p99 over the whole run "
        f"{s.p99_ms:.1f} ms (p50 {s.p50_ms:.2f}).",
        "",
        "Goals: throughput >= 5x tuned `feast serve` (fs store); p99 within 1.5x the floor; at 1,000"
        " requests/s p99 <= 5 ms, p99.9 <= 20 ms, 0 errors; errors only while Redis is down, recovery <= 2 "
        "s.",
    ]
    cells = [
        (closed[(names[0], e, c)], closed[(names[2], e, c)], closed[(names[4], e, c)])
        for e in (1, 20)
        for c in (1, 8, 32)
    ]
    speed = [fs.rps / tuned.rps for fs, tuned, _ in cells]
    tail = [fs.p99_ms / floor.p99_ms for fs, _, floor in cells]
    ratio = [fs.rps / floor.rps for fs, _, floor in cells]
    one = cells[0]
    direct = [closed[(names[0], e, 1)].rps / closed[(PIPELINED, e, 1)].rps for e in (1, 20)]
    r = fixed["fs serve"]
    fixed_ok = r.p99_ms <= 5 and r.p999_ms <= 20 and r.errors == 0
    soak_ok = soak["outside"] == 0 and soak["recovery_s"] <= 2
    lines += [
        "",
        f"Measured against the goals: throughput {min(speed):.1f}-{max(speed):.1f}x tuned `feast serve` "
        f"(5x reached in {sum(x >= 5 for x in speed)} of 6 cells); p99 {min(tail):.2f}-{max(tail):.2f}x the "
        f"floor (within 1.5x in {sum(x <= 1.5 for x in tail)} of 6 cells); fixed rate "
        f"{'met' if fixed_ok else 'missed'}; Redis restart {'met' if soak_ok else 'missed'}. "
        f"fs serve / floor requests/s: {min(ratio):.2f}-{max(ratio):.2f}x. At 1 connection each request "
        "waits for the one before it (wrk, a worker and Redis taking turns on 2 cores): there the floor "
        f"itself is {one[2].rps / one[1].rps:.1f}x tuned `feast serve` at 1 entity, and fs serve gets "
        "past it by reading Redis directly when a worker has nothing else to do (requests/s vs its own "
        f"pipelined reads: {direct[0]:.2f}x at 1 entity, {direct[1]:.2f}x at 20). The floor does "
        "no decoding, no encoding of Feast's JSON, no deadline, metrics or auth "
        f"({cpu[('fs serve', 1, 1)] - cpu[('floor', 1, 1)]:.0f} us of CPU per request at 1 entity, "
        f"{cpu[('fs serve', 20, 1)] - cpu[('floor', 20, 1)]:.0f} us at 20, in-process below) and runs on "
        "uvicorn; fs serve runs its own HTTP layer (plugins/serving/http_server.py).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per wrk cell, 15 s fixed rate, 15 s soak")
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="only the in-process CPU per request (no servers, no wrk; meaningful on a busy "
        "machine; about a minute); prints, does not update docs/benchmarks.md",
    )
    parser.add_argument(
        "--cpu-requests", type=int, default=3000, help="timed requests per app in the CPU part"
    )
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9", help="Redis for the main comparison")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not update docs/benchmarks.md"
    )
    args = parser.parse_args()
    if not args.cpu_only:
        ensure_wrk()
    cell_s, rate_s, soak_s = (5, 15, 15) if args.quick else (10, 60, 30)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    prefix = f"bserve{uuid.uuid4().hex[:6]}"
    db = int(args.url.rsplit("/", 1)[1])
    servers: list[Server] = []
    try:
        objs = objects(tmp)
        fs_repo = make_repo(tmp, "fs", fs_online(args.url, prefix), FS_ENGINE, objs)
        project = yaml.safe_load((fs_repo / "feature_store.yaml").read_text())["project"]
        layout = KeyLayout(prefix, project)
        affixes = [layout.view_affixes(v) for v in ("txn", "profile")]
        floor_env = {"FLOOR_AFFIXES": json.dumps(affixes), "FLOOR_URL": args.url}
        cpu = cpu_in_process(fs_repo, floor_env, args.cpu_requests)
        if args.cpu_only:
            print(render_cpu(cpu, args.cpu_requests))
            return
        stock_repo = make_repo(
            tmp, "stock", {"type": "redis", "connection_string": f"127.0.0.1:6379,db={db}"}, None, objs
        )
        servers = start_servers(fs_repo, stock_repo, floor_env, tmp)
        for s in servers:  # warm every server and check it answers the contract
            loadgen.wrk(s.url, body(20), 4, 2)
        closed = closed_loop(servers, cell_s)
        fixed = fixed_rate([s for s in servers if s.name in ("fs serve", "floor")], 1000, rate_s)
        for s in servers:
            s.stop()
        servers = []
        soak = soak_with_redis_restart(tmp, 500, soak_s)
    finally:
        for s in servers:
            s.stop()
        client = redis.Redis.from_url(args.url)
        for pattern in (f"{prefix}:*", "*benchservestock*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 1000):
                client.unlink(*keys[i : i + 1000])
        shutil.rmtree(tmp, ignore_errors=True)
    machine = f"{os.cpu_count()} cores" + (", --quick" if args.quick else "")
    text = (
        render(closed, fixed, soak, cpu, cell_s, rate_s, machine)
        + "\n\n"
        + render_cpu(cpu, args.cpu_requests)
    )
    print(text)
    if not args.no_write:
        report.write_section("serve", text)


if __name__ == "__main__":
    main()
