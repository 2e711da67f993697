"""`fs serve` as an operator runs it: several worker processes on one port, metrics summed over the
workers, a registry change picked up without a failed request, a killed worker replaced, TLS, and
SIGTERM draining to exit 0 with no process left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from feast import FeatureView, Field
from feast.types import Float64

pytestmark = [pytest.mark.redis, pytest.mark.slow]

FS = str(Path(sys.executable).with_name("fs"))
BODY = {"features": ["txn:amount", "profile:country"], "entities": {"customer_id": [1, 2, 999]}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Server:
    def __init__(self, repo, settings: dict, scheme: str = "http", env: dict | None = None, stdout=None):
        (repo.tmp / "feature_store.yaml").write_text(
            yaml.safe_dump(
                {
                    "project": repo.project,
                    "registry": str(repo.tmp / "registry.db"),
                    "provider": "local",
                    "online_store": repo.online,
                    "offline_store": {"type": "file"},
                    "entity_key_serialization_version": 3,
                }
            )
        )
        self.port = _free_port()
        (repo.tmp / "serve.yaml").write_text(yaml.safe_dump({"port": self.port, **settings}))
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.ctx = ssl._create_unverified_context() if scheme == "https" else None
        self.proc = subprocess.Popen(
            [FS, "--repo", str(repo.tmp), "serve"],
            stdout=stdout or subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "FS_DEBUG": "1", **(env or {})},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.get("/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"fs serve did not start: {self.proc.stderr.read().decode()[-3000:]}")
            time.sleep(0.2)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.base + path, timeout=5, context=self.ctx) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(self, body=BODY):
        req = urllib.request.Request(
            self.base + "/get-online-features",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5, context=self.ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def test_workers_metrics_registry_refresh_worker_restart_and_drain(repo):
    server = Server(repo, {"workers": 2, "registry_refresh_s": 0.3})
    try:
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: server.post()[0], range(200)))
        assert statuses == [200] * 200
        metrics = server.get("/metrics")[1].decode()
        counts = re.findall(r'fs_serve_request_seconds_count\{[^}]*status="200"[^}]*\} (\S+)', metrics)
        assert sum(float(c) for c in counts) == 200, metrics  # both workers' requests, summed

        # A registry change while requests keep coming: none fails, the new view is served.
        failures, lost, stop = [], [], threading.Event()
        killed_at = [float("inf")]

        def load():
            while not stop.is_set():
                try:
                    status, _ = server.post()
                except OSError as e:  # a connection the SIGKILLed worker had accepted
                    lost.append((time.monotonic(), type(e).__name__))
                    continue
                if status != 200:
                    failures.append(status)

        t = threading.Thread(target=load)
        t.start()
        late = FeatureView(
            name="late",
            entities=[repo.customer],
            source=repo.profile.batch_source,
            ttl=None,
            schema=[Field(name="amount", dtype=Float64)],
        )
        repo.store.apply([late])
        deadline = time.monotonic() + 10
        while server.post({"features": ["late:amount"], "entities": {"customer_id": [1]}})[0] != 200:
            assert time.monotonic() < deadline, "the new view was not served within 10 s"
            time.sleep(0.1)

        # A worker that dies is replaced; requests go on meanwhile.
        killed_at[0] = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while len(set(_children(server.proc.pid)) - {workers[0]}) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        t.join()
        assert failures == []
        # One client, one request at a time: only the request in flight on the killed worker is lost.
        assert len(lost) <= 1 and all(at >= killed_at[0] for at, _ in lost), lost
    finally:
        code = server.stop()
    assert code == 0
    assert _children(server.proc.pid) == []


def test_tls(repo, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    server = Server(repo, {"workers": 1, "tls": {"certfile": str(cert), "keyfile": str(key)}}, scheme="https")
    try:
        status, body = server.post()
        assert status == 200 and body["results"][1]["values"] == [1.5, 3.0, None]
    finally:
        assert server.stop() == 0


def test_optional_otel_span_per_request(repo, tmp_path):
    out = tmp_path / "stdout"
    with out.open("w") as stdout:
        server = Server(
            repo, {"workers": 1, "otel_spans": True}, env={"FS_OTEL_EXPORTER": "console"}, stdout=stdout
        )
        try:
            assert server.post()[0] == 200
        finally:
            assert server.stop() == 0
    text = out.read_text()
    assert '"name": "fs.serve.request"' in text and '"feature_service": "features"' in text
    assert '"http.status_code": 200' in text and "customer_id" not in text  # no keys in spans
