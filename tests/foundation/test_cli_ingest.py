"""`fs ingest` as a newcomer meets it (issue #14.9): no broker is one line within seconds naming the
address and `fs ingest broker`, which starts a local one; --duration bounds the wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fs_platform.cli.main import main
from fs_platform.plugins.kafka_ingest.broker import _free_port, _listening

pytestmark = pytest.mark.kafka

FS = [sys.executable, "-m", "fs_platform.cli.main"]


@pytest.mark.parametrize("command", [["dlq"], ["run", "--duration", "1"]], ids=" ".join)
def test_no_broker_is_one_line_within_seconds(example_repo, command):
    address = f"127.0.0.1:{_free_port()}"
    proc = subprocess.run(
        [*FS, "--repo", str(example_repo), "ingest", *command, "--bootstrap", address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert len(err) == 1, err  # no kafka-python log lines or warnings without -v
    assert f"no Kafka broker reachable at {address}" in err[0] and "`fs ingest broker`" in err[0]
    # The wait itself is <= 3 s (1 s with --duration 1); kafka-python alone took 34 s before failing.
    # Timed in-process, so the interpreter's and Feast's imports (seconds on a loaded box) do not count.
    started = time.monotonic()
    assert main(["--repo", str(example_repo), "ingest", *command, "--bootstrap", address]) == 1
    elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed


def test_fs_ingest_broker_serves_the_declared_topics_until_stopped(example_repo, capsys):
    port = _free_port()
    broker = subprocess.Popen(
        [*FS, "--repo", str(example_repo), "ingest", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = broker.stdout.readline()  # printed once the topics exist
        assert f"on 127.0.0.1:{port}" in line and "payments.dead-letter" in line, broker.stderr.read()
        assert (
            main(["--repo", str(example_repo), "--json", "ingest", "dlq", "--bootstrap", f"127.0.0.1:{port}"])
            == 0
        )
        assert capsys.readouterr().out.strip() == "[]"
    finally:
        os.kill(broker.pid, signal.SIGTERM)
        assert broker.wait(timeout=30) == 0
    assert not _listening(port)  # tansu stopped with it
