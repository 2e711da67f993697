"""`make test` leaves no process behind (issue #14.12): the session-end hook stops the embedded Valkey
servers that tests' repo copies started (in-process or through `fs` subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fs_platform.plugins.redis_store import embedded
from tests.conftest import stop_embedded_servers

pytestmark = pytest.mark.redis


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"


def test_session_cleanup_stops_servers_started_in_process_and_by_subprocesses(tmp_path):
    first = tmp_path / "a" / "data" / "valkey"
    embedded.ensure_server(first)
    second = tmp_path / "b" / "data" / "valkey"
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from plugins.redis_store import embedded; embedded.ensure_server({str(second)!r})",
        ],
        check=True,
        timeout=60,
    )
    pids = [embedded._read_state(d.resolve())["pid"] for d in (first, second)]
    assert all(_running(p) for p in pids)
    stopped = stop_embedded_servers(tmp_path)
    assert sorted(stopped) == sorted([first.resolve(), second.resolve()])
    assert not any(_running(p) for p in pids)


def test_a_server_whose_directory_was_deleted_is_still_stopped(tmp_path):
    """Valkey refuses SIGTERM when its final save fails (pytest deletes old tmp dirs under running
    servers): stop_server then kills it instead of leaving it running."""
    import shutil

    data_dir = tmp_path / "gone" / "data" / "valkey"
    embedded.ensure_server(data_dir)
    pid = embedded._read_state(data_dir.resolve())["pid"]
    state = (data_dir / "server.json").read_text()
    shutil.rmtree(tmp_path / "gone")
    data_dir.mkdir(parents=True)  # only the state file comes back: the server's own directory is gone
    (data_dir / "server.json").write_text(state)
    assert embedded.stop_server(data_dir, timeout_s=2)
    assert not _running(pid)
