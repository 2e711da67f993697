"""``fs serve`` processes: one master, ``workers`` worker processes sharing one listening socket.

The master installs its signal handlers first, loads the repo and compiles a plan for every feature
service, then ``gc.freeze()``s everything loaded so far: later (gen-2) collections never walk the
registry, Feast and pandas objects again (in Feast's server those collections paused a worker for up
to 2.7 s). It then binds the socket and forks the workers, which share the frozen objects
copy-on-write. Each worker runs fs serve's own HTTP server (``http_server``: uvloop, httptools) with
no request-count recycling and no access log. The master restarts a worker that dies; on SIGTERM or
SIGINT it forwards the signal, lets the workers finish their in-flight requests (``shutdown_grace_s``)
and exits 0.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

from fs_platform.plugins.serving.settings import ServeSettings

log = logging.getLogger(__name__)

_RESPAWN_MIN_S = 1.0  # a worker that keeps dying is restarted at most once a second


def prepare_metrics_dir() -> str:
    """A fresh directory for the workers' shared metrics, in both variables prometheus_client reads;
    set before the workers fork (prometheus_client opens its files per process, lazily). An inherited
    ``PROMETHEUS_MULTIPROC_DIR`` is ignored: ``import feast`` sets one in every process (its own temp
    dir), so a parent that imported Feast would otherwise pass its samples down to this server's
    /metrics. Returns the directory to delete at exit."""
    path = tempfile.mkdtemp(prefix="fs-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["PROMETHEUS_MULTIPROCESS_DIR"] = path
    return path


class Master:
    def __init__(self, settings: ServeSettings, on_ready=None):
        self.settings = settings
        self.on_ready = on_ready
        self.stopping = False
        self.workers: dict[int, int] = {}  # pid -> slot
        self._last_spawn: dict[int, float] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)

    def _stop(self, signum, _frame) -> None:
        self.stopping = True

    def run(self, load_app) -> int:
        """``load_app()`` builds the ASGI app (slow: registry, plans); exit code of the server."""
        app = load_app()
        if self.stopping:  # a signal during start-up: nothing served, clean exit
            return 0
        gc.collect()
        gc.freeze()
        socks = self._bind()
        for slot in range(self.settings.workers):
            self._spawn(app, socks, slot)
        if self.on_ready:
            self.on_ready(self.settings)
        while not self.stopping:
            self._reap(app, socks)
            time.sleep(0.1)
        return self._shutdown(socks)

    def _bind(self) -> list[socket.socket]:
        """One listening socket per worker slot on the same port (SO_REUSEPORT): the kernel spreads new
        connections evenly over them. With one shared socket, the worker that wakes first accepts a
        whole burst of connections, and a client's keep-alive connections can all land on one worker.
        The master keeps the sockets, so a restarted worker takes over its slot's queue."""
        s = self.settings
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        socks: list[socket.socket] = []
        port = s.port
        for _ in range(s.workers):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((s.host, port))
            port = sock.getsockname()[1]  # port 0: the others join the port the first one got
            sock.listen(2048)
            sock.set_inheritable(True)
            socks.append(sock)
        return socks

    def _spawn(self, app, socks: list[socket.socket], slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for i, other in enumerate(socks):
                    if i != slot:
                        other.close()
                code = _worker(app, socks[slot], self.settings)
            finally:
                os._exit(code)
        self.workers[pid] = slot
        self._last_spawn[slot] = time.monotonic()

    def _reap(self, app, socks: list[socket.socket]) -> None:
        while self.workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            slot = self.workers.pop(pid, None)
            if slot is None:
                continue
            _mark_dead(pid)
            if self.stopping:
                continue
            log.error("fs serve worker %d (pid %d) exited with %s; restarting", slot, pid, _describe(status))
            wait = _RESPAWN_MIN_S - (time.monotonic() - self._last_spawn.get(slot, 0.0))
            if wait > 0:
                time.sleep(wait)
            self._spawn(app, socks, slot)

    def _shutdown(self, socks: list[socket.socket]) -> int:
        for pid in list(self.workers):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_s + 5
        while self.workers and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid:
                self.workers.pop(pid, None)
                _mark_dead(pid)
            else:
                time.sleep(0.05)
        for pid in list(self.workers):
            log.error("fs serve worker pid %d did not stop within the grace period; killing it", pid)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for sock in socks:
            sock.close()
        return 0


def _worker(app, sock: socket.socket, settings: ServeSettings) -> int:
    from fs_platform.plugins.serving.http_server import run_worker

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # the worker's loop installs its own (draining) handlers
    return run_worker(app, sock, settings)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def serve(repo: str | os.PathLike, env: str, settings: ServeSettings, on_ready=None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit code."""
    metrics_dir = prepare_metrics_dir()
    master = Master(settings, on_ready)
    try:

        def load_app():
            from fs_platform.platform import Platform
            from fs_platform.plugins.serving.app import ServeApp

            app = ServeApp(Platform(repo, env=env).store, settings)
            app.warm()
            return app

        return master.run(load_app)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        sys.stdout.flush()
