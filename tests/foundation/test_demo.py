"""The README's main job, `fs demo`, end to end on its embedded defaults (Sail, Valkey, tansu, local
Delta), on a private copy of the example repo with a small data set and a short stream."""

from __future__ import annotations

import json

import pytest

from cli.main import main

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_demo_runs_end_to_end_and_ingests_every_streamed_payment(example_repo, capsys):
    code = main(["--repo", str(example_repo), "--json", "demo", "--customers", "200", "--merchants", "20",
                 "--days", "3", "--stream-seconds", "2"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    payments = out["tables"]["customer_txn_aggregates"]  # one aggregate row per payment
    assert payments > 0 and out["training_rows"] == min(2000, payments)
    assert len(out["online"]) == 5 and all(r["txn_count_24h"] is not None for r in out["online"])
    stream = out["stream"]
    # Every fresh payment is consumed and lands in Delta once; none is dead-lettered.
    assert stream["produced"] > 0 and stream["history"] > 0
    assert stream["consumed"] == stream["produced"] == stream["written_offline"]
    assert stream["dead_lettered"] == {}
    # The stream-fed aggregates moved for the customers that got fresh payments.
    before = {r["customer_id"]: r["txn_count_24h"] for r in out["stream_before"]}
    after = {r["customer_id"]: r["txn_count_24h"] for r in out["stream_after"]}
    assert before.keys() == after.keys() and any(after[c] != before[c] for c in before)
