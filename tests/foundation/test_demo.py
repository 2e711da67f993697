"""The README's main job, `fs demo`, end to end on its embedded defaults (Sail, Valkey, tansu, local
Delta), on a private copy of the example repo with a small data set and a short stream."""

from __future__ import annotations

import json

import pytest

from fs_platform.cli.main import main

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_demo_runs_end_to_end_and_ingests_every_streamed_payment(example_repo, capsys):
    code = main(
        [
            "--repo",
            str(example_repo),
            "--json",
            "demo",
            "--customers",
            "200",
            "--merchants",
            "20",
            "--days",
            "3",
            "--stream-seconds",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    payments = out["tables"]["payments"]  # the raw events the aggregation views aggregate
    assert payments > 0 and out["training_rows"] == min(2000, payments)
    # The online read (feature service fraud_model_v2): tiles rebuilt by `fs materialize`, merged now.
    assert len(out["online"]) == 5
    assert all(r["txn_count_24h"] > 0 for r in out["online"])  # the 5 most active customers
    stream = out["stream"]
    # Every fresh payment is consumed and lands in Delta once; none is dead-lettered.
    assert stream["produced"] > 0
    assert stream["consumed"] == stream["produced"] == stream["written_offline"]
    assert stream["dead_lettered"] == {}
    # The customers' windowed counts moved on from the materialized tiles with the fresh payments.
    before = {r["customer_id"]: r["txn_count_24h"] for r in out["stream_before"]}
    after = {r["customer_id"]: r["txn_count_24h"] for r in out["stream_after"]}
    assert before.keys() == after.keys() and any(after[c] > before[c] for c in before)
