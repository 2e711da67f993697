"""Conforming recomputed rows to the Delta table's schema: errors name columns and types only."""

import pyarrow as pa
import pytest

from fs_platform.backfill.offline import conform
from fs_platform.errors import SchemaMismatchError


def test_a_cast_error_names_column_and_types_but_never_the_value():
    data = pa.table({"customer_id": pa.array([1, 2]), "email_hash": pa.array(["ok", "jane.doe@example.com"])})
    schema = pa.schema([("customer_id", pa.int64()), ("email_hash", pa.int64())])
    with pytest.raises(SchemaMismatchError) as err:
        conform(data, schema, "customer_profile")
    message = str(err.value)
    assert "'email_hash'" in message and "string" in message and "int64" in message
    assert "jane.doe" not in message and "ok" not in message.split("'customer_profile'")[1].replace(
        "int64", ""
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_latest_per_key_picks_as_the_point_in_time_join_does():
    """Newest event time wins; at equal event time the newer created time wins and a null one loses
    (the offline join and the online store's ordering agree on both)."""
    from datetime import UTC, datetime

    from fs_platform.backfill.offline import latest_per_key

    t0, t1 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")
    data = pa.table(
        {
            "customer_id": pa.array([1, 1, 2, 2, 3, 3]),
            "event_timestamp": pa.array([t0, t1, t1, t1, t1, t1], ts),
            "created": pa.array([t1, t0, t0, None, None, t0], ts),
            "v": pa.array([10, 11, 20, 21, 30, 31]),
        }
    )
    latest = latest_per_key(data, ["customer_id"], "event_timestamp", "created").to_pydict()
    assert dict(zip(latest["customer_id"], latest["v"], strict=True)) == {1: 11, 2: 20, 3: 31}


def test_latest_per_key_leaves_exact_ties_to_spark():
    """Rows equal in key, event and created time: the winner is Spark's tie hash of the feature
    values, so ``latest_per_key`` declines (the runner then pulls the chunk through Spark) instead
    of keeping whichever row came last. A tie only among older rows does not matter."""
    from datetime import UTC, datetime

    from fs_platform.backfill.offline import latest_per_key

    t0, t1 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")

    def table(events, created, values):
        return pa.table(
            {
                "customer_id": pa.array([1] * len(values)),
                "event_timestamp": pa.array(events, ts),
                "created": pa.array(created, ts),
                "v": pa.array(values),
            }
        )

    assert (
        latest_per_key(table([t1, t1], [t0, t0], [1, 2]), ["customer_id"], "event_timestamp", "created")
        is None
    )
    assert (
        latest_per_key(table([t1, t1], [None, None], [1, 2]), ["customer_id"], "event_timestamp", "created")
        is None
    )
    older_tie = latest_per_key(
        table([t0, t0, t1], [t0, t0, t0], [1, 2, 3]), ["customer_id"], "event_timestamp", "created"
    )
    assert older_tie is not None and older_tie["v"].to_pylist() == [3]
