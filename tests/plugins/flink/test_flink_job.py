"""The Flink job end to end on real Kafka (tansu), Redis and Delta: the same tiles as the ingestor and the
reference, late and out-of-order events counted, bad ones dead-lettered, the raw events appended to Delta
(the topic's targets are ``both``); SIGKILL mid-stream (twice) and restore from the last checkpoint loses
and duplicates nothing, online or in Delta; stop with a savepoint and restore from it; a changed spec
refuses to restore; the ingestor's Prometheus metrics and /health from the Python worker, Flink's own from
its reporter. One scenario, so the JVM starts only four times (~15-20 s each)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from fs_platform.aggregation import col, spec_of
from fs_platform.aggregation.spec import TAG
from fs_platform.plugins.flink.plan import RestoreRefused
from fs_platform.plugins.kafka_ingest.deadletter import read_dead_letters
from tests.plugins.flink.conftest import converge as _converge
from tests.plugins.flink.conftest import needs_flink
from tests.plugins.flink.conftest import start as _start
from tests.plugins.kafka_ingest.conftest import assert_exactly_once, payments, produce

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.redis, needs_flink]


def _bad_records() -> list[tuple[bytes, bytes]]:
    """A too-late event (2 h before its record's time; the views allow 1 h), one keyed by another customer,
    and one that is not JSON."""
    late = {
        "payment_id": 10**6,
        "customer_id": 1,
        "merchant_id": 1,
        "amount": 5.0,
        "approved": True,
        "event_timestamp": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
    }
    other_key = {**late, "payment_id": 10**6 + 1, "event_timestamp": datetime.now(UTC).isoformat()}
    return [(b"1", json.dumps(late).encode()), (b"2", json.dumps(other_key).encode()), (b"1", b"{not json")]


def _trickle(repo, events, seconds: float) -> None:
    step = max(1, len(events) // 30)
    for i in range(0, len(events), step):
        produce(repo.broker.bootstrap, repo.topic, events[i : i + step])
        time.sleep(seconds / 30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _samples(text: str) -> dict[tuple, float]:
    """(name, sorted labels) -> value of every sample of a Prometheus text page."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _check_metrics(repo, ports: dict[str, int], events: int, job) -> None:
    """The worker's page has the ingestor's metrics with this run's counts, /health says ok; Flink's
    reporter has the checkpoint duration (polled: a checkpoint and a lag read come every few seconds)."""
    topic, deadline = repo.topic, time.monotonic() + 60
    while True:
        code, health = _scrape(ports["metrics_port"], "/health")
        worker = _samples(_scrape(ports["metrics_port"])[1])
        flink = _scrape(ports["flink_metrics_port"])[1]
        lag = [v for (n, labels), v in worker.items() if n == "fs_ingest_consumer_lag"]
        if lag and "lastCheckpointDuration" in flink:
            break
        assert job.process.poll() is None and time.monotonic() < deadline, (lag, flink[:500])
        time.sleep(1.0)
    assert code == 200 and json.loads(health)["status"] == "ok", health
    assert worker[("fs_ingest_consumed_records_total", (("topic", topic),))] == events + 3
    assert worker[("fs_ingest_written_rows_total", (("target", "offline"), ("topic", topic)))] == events
    assert worker[("fs_ingest_written_rows_total", (("target", "online"), ("topic", topic)))] > 0
    for reason in ("too_late", "bad_key"):
        assert worker[("fs_ingest_dead_lettered_records_total", (("reason", reason), ("topic", topic)))] == 1
    assert worker[("fs_ingest_freshness_seconds_count", (("topic", topic),))] > 0
    assert sum(lag) == 0, lag  # all read: nothing waits


def _converge_delta(repo, job, events, timeout: float = 60.0) -> None:
    """Wait until Delta holds as many rows as ``events`` (the appends follow the tile writes), then check
    each event is there exactly once, as produced, and the online values equal the reference."""
    deadline = time.monotonic() + timeout
    while (rows := repo.delta_rows()) is None or len(rows) < len(events):
        assert job.process.poll() is None, f"the job process ended (exit {job.process.returncode})"
        assert time.monotonic() < deadline, (
            f"{0 if rows is None else len(rows)} Delta rows, {len(events)} sent"
        )
        time.sleep(0.5)
    assert_exactly_once(repo, events)


def test_flink_tiles_and_delta_exact_through_kill_restore_and_savepoint(flink_repo, tmp_path):
    repo = flink_repo
    first = payments(400, seed=1)  # arrive up to 5 min late, out of order
    produce(repo.broker.bootstrap, repo.topic, first)
    producer = KafkaProducer(bootstrap_servers=repo.broker.bootstrap)
    for key, value in _bad_records():
        producer.send(repo.topic, key=key, value=value)
    producer.flush()
    producer.close()

    # The first run serves metrics (a later run would find the ports of the killed one still closing).
    ports = {"metrics_port": _free_port(), "flink_metrics_port": _free_port()}
    fast = yaml.safe_load((repo.path / "flink.yaml").read_text())
    (repo.path / "flink.yaml").write_text(yaml.safe_dump({**fast, **ports}))
    job = _start(repo, tmp_path)
    (repo.path / "flink.yaml").write_text(yaml.safe_dump(fast))
    try:
        _converge(repo, job, first)
        _check_metrics(repo, ports, len(first), job)
        letters = read_dead_letters(f"{repo.topic}.dlq", bootstrap_servers=repo.broker.bootstrap)
        reasons = {d.reason for d in letters}
        assert {"too_late", "bad_key"} <= reasons and len(reasons) == 3, reasons  # and the undecodable one

        # Mid-stream, twice: a producer sends 1,000 more events over ~5 s; SIGKILL the job while it runs,
        # restart it (from the last checkpoint).
        sent = list(first)
        for round_ in range(2):
            more = payments(1000, seed=10 + round_, first_id=10_000 * (round_ + 1))
            sender = threading.Thread(target=_trickle, args=(repo, more, 5.0))
            sender.start()
            time.sleep(2.5)
            job.kill()
            sender.join()
            sent += more
            job = _start(repo, tmp_path)
            assert job.restored_from and "/chk-" in job.restored_from, job.restored_from
        _converge(repo, job, sent)
        _converge_delta(repo, job, sent)  # the replays after each kill appended nothing twice

        savepoint = job.stop()
        assert savepoint and "savepoint-" in savepoint
        third = payments(200, seed=3, first_id=50_000)
        produce(repo.broker.bootstrap, repo.topic, third)
        job = _start(repo, tmp_path)
        assert job.restored_from and "savepoint-" in job.restored_from
        _converge(repo, job, sent + third)
        _converge_delta(repo, job, sent + third)
    finally:
        job.kill()

    # The spec of one view changes (a filter): its tiles cannot continue from the checkpoint.
    view = repo.platform.store.get_feature_view("customer_amount_stats")
    spec = json.loads(view.tags[TAG])
    spec["where"] = (col("amount") > 1).to_obj()
    view.tags[TAG] = json.dumps(spec)
    repo.platform.store.apply([view])
    assert spec_of(repo.platform.store.get_feature_view("customer_amount_stats")).where is not None
    with pytest.raises(RestoreRefused, match="tile layout of customer_amount_stats changed"):
        _start(repo, tmp_path)
