"""The views' expectation suites gate ingestion of plain stream views: a strict failure dead-letters
the whole batch. On the fixture's plain view ``customer_txn_counts`` (conftest.transform_repo), whose
suite (fixtures/customer_txn_counts.json) wants each running ``amount_total`` within [0, 100,000]."""

from __future__ import annotations

import json

import pytest
import yaml

from fs_platform.plugins.kafka_ingest import Ingestor
from fs_platform.plugins.kafka_ingest.deadletter import read_dead_letters
from tests.plugins.kafka_ingest.conftest import TRANSFORM_VIEW, Running, payments, produce

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def _gate(repo, mode: str) -> None:
    path = repo.path / "expectations" / f"{TRANSFORM_VIEW}.json"
    suite = json.loads(path.read_text())
    suite["meta"]["gate"] = mode
    path.write_text(json.dumps(suite))
    ingest = yaml.safe_load((repo.path / "ingest.yaml").read_text())
    ingest["topics"][0]["quality_gate"] = True
    (repo.path / "ingest.yaml").write_text(yaml.safe_dump(ingest))


def test_strict_gate_dead_letters_a_failing_batch_and_loses_nothing(transform_repo):
    repo = transform_repo
    _gate(repo, "strict")
    events = payments(120, customers=10)
    poisoned = dict(
        events[-1], payment_id=10_000, customer_id=777, amount=500_000.0
    )  # totals must be <= 100k
    produce(repo.broker.bootstrap, repo.topic, [*events, poisoned])

    run = Running(Ingestor(repo.platform, repo.config()))
    total = len(events) + 1
    run.wait(
        lambda s: s.written_offline + s.dead_lettered.get("validation_failed", 0) == total,
        what="every event written or dead-lettered",
    )
    stats = run.stop()

    assert stats.dead_lettered.get("validation_failed", 0) >= 1
    letters = read_dead_letters(f"{repo.topic}.dlq", bootstrap_servers=repo.broker.bootstrap)
    assert {d.reason for d in letters} == {"validation_failed"}
    assert any(json.loads(d.value)["payment_id"] == 10_000 for d in letters)  # original bytes kept
    rows = repo.delta_rows()
    assert rows is None or 777 not in set(rows["customer_id"])  # the poisoned row never reached Delta
    assert repo.online(TRANSFORM_VIEW, "customer_id", [777])["amount_total"].isna().all()  # ... nor online
    # nothing lost: every event is either offline or in the dead-letter topic
    assert (0 if rows is None else len(rows)) + len(letters) == total


def test_warn_gate_writes_and_records(transform_repo):
    repo = transform_repo
    _gate(repo, "warn")
    events = payments(30, customers=5)
    poisoned = dict(events[-1], payment_id=20_000, customer_id=888, amount=500_000.0)
    produce(repo.broker.bootstrap, repo.topic, [*events, poisoned])

    run = Running(Ingestor(repo.platform, repo.config()))
    run.wait(lambda s: s.written_offline == len(events) + 1, what="all events written")
    run.stop()

    from fs_platform.governance.validate import ResultLog

    warned = ResultLog(repo.path).list(TRANSFORM_VIEW, failed_only=True)
    assert any(r.outcome == "warned" and r.origin == "ingest" for r in warned)
    assert 888 in set(repo.delta_rows()["customer_id"])
