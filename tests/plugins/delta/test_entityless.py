"""#14.2: Feast's entity-less feature views (no entities: served for every row, e.g. global statistics)
through retrieval, materialization, online reads (Feast's API, FastReader) and parity.

Real Delta tables, embedded Sail, the machine's Redis (db 9, a unique project per test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from feast import Entity, FeatureView, Field
from feast.types import Float64, Int64
from feast.value_type import ValueType

from fs_platform.plugins.delta import DeltaSource
from fs_platform.plugins.delta.offline_store import DeltaOfflineStore
from tests.plugins.delta.delta_helpers import redis_delta_store, write_table

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture
def store(tmp_path, engine):
    """``global_stats`` (no entities; fraud_rate 0.1/0.2/0.3 at T0-2h/-1h/T0) beside a customer view."""
    write_table(
        tmp_path / "glob",
        pd.DataFrame(
            {
                "fraud_rate": [0.1, 0.2, 0.3],
                "event_timestamp": [T0 - timedelta(hours=2), T0 - timedelta(hours=1), T0],
                "created": [T0] * 3,
            }
        ),
    )
    write_table(
        tmp_path / "cust",
        pd.DataFrame({"customer_id": [1, 2], "n": [5, 6], "event_timestamp": [T0 - timedelta(hours=3)] * 2}),
    )
    fs = redis_delta_store(tmp_path, REDIS_URL)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    stats = FeatureView(
        name="global_stats",
        entities=[],
        ttl=timedelta(days=1),
        schema=[Field(name="fraud_rate", dtype=Float64)],
        source=DeltaSource(
            name="glob",
            path=str(tmp_path / "glob"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
    )
    cust = FeatureView(
        name="cust",
        entities=[customer],
        ttl=timedelta(days=1),
        schema=[Field(name="customer_id", dtype=Int64), Field(name="n", dtype=Int64)],
        source=DeltaSource(name="cust", path=str(tmp_path / "cust"), timestamp_field="event_timestamp"),
    )
    fs.apply([customer, stats, cust])
    yield fs
    fs.teardown()


ENTITY_DF = pd.DataFrame(
    {
        "customer_id": [1, 2, 1, 2],
        "event_timestamp": [T0 - timedelta(minutes=90), T0, T0 - timedelta(hours=5), T0 + timedelta(days=2)],
    }
)
# as of each row: the T0-2h row; the T0 row; nothing yet; past the 1-day ttl
WANT = [0.1, 0.3, None, None]


def _values(series: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in series]


def test_retrieval_joins_every_entity_row_with_the_view_rows(store):
    got = store.get_historical_features(ENTITY_DF, ["global_stats:fraud_rate", "cust:n"]).to_df()
    assert _values(got["fraud_rate"]) == WANT
    assert _values(got["n"]) == [5, 6, None, None]
    only = store.get_historical_features(ENTITY_DF[["event_timestamp"]], ["global_stats:fraud_rate"]).to_df()
    assert _values(only["fraud_rate"]) == WANT


def test_retrieval_with_created_timestamp_filter_and_date_range_mode(store):
    view = store.get_feature_view("global_stats")
    job = DeltaOfflineStore.get_historical_features(
        store.config,
        [view],
        ["global_stats:fraud_rate"],
        ENTITY_DF,
        store.registry,
        store.project,
        filter_by_created_timestamp=True,
    )
    # created = T0 for every row: rows are visible only to entity rows at or after T0
    assert _values(job.to_df()["fraud_rate"]) == [None, 0.3, None, None]
    ranged = store.get_historical_features(
        features=["global_stats:fraud_rate"], start_date=T0 - timedelta(hours=3), end_date=T0
    ).to_df()
    assert _values(ranged["fraud_rate"]) == [0.3]


def test_materialize_then_online_reads_and_parity(store):
    from fs_platform.parity import check
    from fs_platform.plugins.redis_store.fast_read import FastReader

    store.materialize(T0 - timedelta(days=1), T0 + timedelta(seconds=1))
    rows = [{"customer_id": 1}, {"customer_id": 2}]
    got = store.get_online_features(["global_stats:fraud_rate", "cust:n"], rows).to_dict()
    assert got == {"customer_id": [1, 2], "fraud_rate": [0.3, 0.3], "n": [5, 6]}
    only_global = store.get_online_features(["global_stats:fraud_rate"], {"customer_id": [1, 2, 3]}).to_dict()
    assert only_global["fraud_rate"] == [0.3, 0.3, 0.3]
    assert store.get_online_features(["global_stats:fraud_rate"], [{}, {}]).to_dict() == {
        "fraud_rate": [0.3, 0.3]
    }
    reader = FastReader(store, ["cust:n", "global_stats:fraud_rate"])
    assert reader.read({"customer_id": [2, 1, 7]}) == {"n": [6, 5, None], "fraud_rate": [0.3, 0.3, 0.3]}
    only = FastReader(store, ["global_stats:fraud_rate"])
    assert only.read({"customer_id": [1, 2]}) == {"fraud_rate": [0.3, 0.3]}

    report = check(store, views=["global_stats"], sample=10, seed=1)
    assert report.views[0].entities == 1 and report.views[0].with_data == 1
    assert report.verdict == "ok"
