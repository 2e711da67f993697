"""Ingest checks and the dead-letter replay on the embedded Kafka broker (tansu), real Redis and Delta:
events dead-lettered for a config mistake are found, replayed once the config is fixed, ingested,
audited, and the replay declares it has no rollback (issue #16)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from fs_platform.cli.main import app
from fs_platform.doctor import Severity, doctor, ops
from fs_platform.doctor.triage import triage
from fs_platform.errors import OpsError
from fs_platform.plugins.kafka_ingest import Ingestor
from tests.plugins.kafka_ingest.conftest import Running, broker, payments, produce, stream_repo  # noqa: F401

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def _one(report, check):
    (finding,) = [f for f in report.findings if f.check == check]
    return finding


def _ingest(repo, consumed: int, offline: int) -> None:
    run = Running(Ingestor(repo.platform, repo.config()))
    run.wait(lambda s: s.consumed >= consumed and s.written_offline >= offline, what="ingestion")
    run.stop()


def test_dead_letters_are_replayed_after_the_fix_once_and_ingested(stream_repo):  # noqa: F811
    repo = stream_repo
    good = payments(6, customers=3)
    ahead = payments(
        4, customers=3, first_id=100, span=timedelta(minutes=5), end=datetime.now(UTC) + timedelta(minutes=40)
    )  # producer clocks 35-40 min ahead
    produce(repo.broker.bootstrap, repo.topic, good + ahead)
    before = _one(doctor(repo.platform, checks=["ingest"]), "ingest")
    assert before.subject == repo.topic and before.evidence["uncommitted_partitions"] == 2  # never consumed

    _ingest(repo, consumed=10, offline=6)  # max_future 5m: the four are dead-lettered
    report = doctor(repo.platform, checks=["ingest", "dead_letters"])
    lag = _one(report, "ingest")
    assert (
        lag.severity == Severity.OK
        and lag.evidence["lag"] == 0
        and lag.evidence["uncommitted_partitions"] == 0
    )
    letters = _one(report, "dead_letters")
    assert letters.severity == Severity.WARNING  # growth: all four in the last hour
    assert letters.evidence["pending"] == 4 and letters.evidence["by_reason"] == {"future_timestamp": 4}
    assert letters.actions == () and "fix the cause first" in letters.message  # they would fail again
    t = triage(repo.platform, views=["customer_txn_aggregates"], since=timedelta(hours=1))
    (spike,) = [e for e in t.timeline if e.source == "dead_letters"]
    assert spike.what.endswith("future_timestamp 4")
    assert "dead_letters" in [c.check for c in t.causes] and "future_timestamp 4" in t.markdown()

    repo.configure(topic={"max_future": "2h"})  # the fix
    report = doctor(repo.platform, checks=["dead_letters"])
    (action,) = _one(report, "dead_letters").actions
    assert action.kind == "replay_dead_letters" and action.classification.value == "forward_only"
    assert action.params["letters"] == 4 and action.params["end"] == {"0": 4}
    plan = ops.make_plan(repo.platform, report, proposer="alice")
    (done,) = ops.apply(repo.platform, plan, approver="bob")
    assert done.status == "executed", done.message
    assert done.changed["replayed"] == 4 and done.changed["still_failing"] == {}

    _ingest(repo, consumed=4, offline=4)
    rows = repo.delta_rows()
    assert sorted(rows["payment_id"]) == [1, 2, 3, 4, 5, 6, 100, 101, 102, 103]  # each once
    after = _one(doctor(repo.platform, checks=["dead_letters"]), "dead_letters")
    assert after.severity == Severity.OK and not after.actions  # the replayed range is behind the mark

    (again,) = ops.apply(repo.platform, plan, approver="bob")
    assert again.status == "skipped"  # the same plan twice: replayed once
    with pytest.raises(OpsError, match="has no rollback: none: records sent back"):
        ops.rollback(repo.platform, done.action.id, approver="bob")
    events = [(e.event, e.kind) for e in ops.log_events(repo.platform)]
    assert ("executed", "replay_dead_letters") in events


def test_replay_dlq_command_dry_run_counts_and_sends_nothing(stream_repo):  # noqa: F811
    repo = stream_repo
    produce(repo.broker.bootstrap, repo.topic, [], raw=[b"not json", b"{}"])
    _ingest(repo, consumed=2, offline=0)
    base = ["--repo", str(repo.path), "--json", "ingest", "replay-dlq"]
    dry = CliRunner().invoke(app, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    out = json.loads(dry.output)
    assert out["replayed"] == 0 and sum(out["still_failing"].values()) == 2  # still bad: not sent
    assert out["dlq_end_offsets"] == {"0": 2}
    bad = CliRunner().invoke(app, [*base, "--start", "zero"])
    assert bad.exit_code != 0 and "PARTITION=OFFSET" in str(bad.exception)


def test_an_open_breaker_of_an_ingestor_on_this_host_is_a_warning(stream_repo):  # noqa: F811
    from fs_platform.plugins.kafka_ingest import metrics
    from fs_platform.plugins.kafka_ingest.server import serve

    server = serve(None, 0)  # the ingestor's own /metrics endpoint, over this process' registry
    try:
        stream_repo.configure(http_port=server.server_address[1])
        metrics.BREAKER.labels("online").set(2)
        (open_,) = [
            f
            for f in doctor(stream_repo.platform, checks=["ingest"]).findings
            if f.subject.startswith("breaker")
        ]
        assert open_.severity == Severity.WARNING and open_.evidence == {"target": "online", "state": 2}
        metrics.BREAKER.labels("online").set(0)
        assert not [
            f
            for f in doctor(stream_repo.platform, checks=["ingest"]).findings
            if f.subject.startswith("breaker")
        ]
    finally:
        metrics.BREAKER.labels("online").set(0)
        server.shutdown()
        server.server_close()
