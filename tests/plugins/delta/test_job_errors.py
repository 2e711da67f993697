"""#20.4: a failed Spark query is reported with the platform's one scrubbing rule (``fs_platform.scrub``), the
rule backfill chunks use too: no double-quoted literal, e-mail, number or ``key=value`` survives (the
store's old rule removed single-quoted literals only)."""

from __future__ import annotations

import pytest

from fs_platform.backfill.reporting import failure_message
from fs_platform.errors import OfflineStoreError
from fs_platform.plugins.delta.job import DeltaRetrievalJob

SECRET_BITS = ("4111", "alice", "example.com", "key=42", '"')


def test_a_failed_spark_query_says_what_failed_without_the_values(engine):
    query = """SELECT raise_error('no card "4111 1111" for alice@example.com, key=42') AS x"""
    job = DeltaRetrievalJob(engine, lambda: engine.spark.sql(query), None)
    with pytest.raises(OfflineStoreError) as err:
        job.to_arrow()
    message = err.value.message
    assert message.startswith("the Spark query of this retrieval failed: ") and "no card" in message
    assert not [bit for bit in SECRET_BITS if bit in message], message
    # The same words as a failed backfill chunk reports for the same error.
    assert message.endswith(failure_message(err.value.__cause__))
