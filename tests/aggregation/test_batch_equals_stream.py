"""The contract of aggregation views: the batch path (Spark, training) and the stream path (tiles in
Redis, serving) give the same value for the same (key, request time), whatever the stream did: events
out of order, late, redelivered after a restart, requests long after the last event (lag, downtime).

Random event streams (hypothesis); at request times after each quarter of the stream, both paths see
the events that had arrived by then; they must agree with each other and with the naive reference."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import RepoConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fs_platform.aggregation import Aggregation, col, spec_of
from fs_platform.plugins.delta.aggregation_as_of import as_of
from fs_platform.plugins.delta.engine import get_engine
from fs_platform.plugins.redis_store.online_store import RedisOnlineStore
from fs_platform.plugins.redis_store.tile_store import TileRead
from tests.aggregation.reference import expected
from tests.aggregation.views import events_view

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# Keys expire in real time when their newest tile leaves every window: events start now.
T0 = datetime.now(UTC).replace(second=0, microsecond=0)
REQUESTS = 4


def _view():
    return events_view(
        [
            Aggregation("*", "count", ["10m", "1h"], name="n"),
            Aggregation("amount", "sum", ["10m", "1h", "3h"]),
            Aggregation("amount", "mean", ["1h"]),
            Aggregation("amount", "min", ["1h"]),
            Aggregation("amount", "max", ["10m"]),
            Aggregation("amount", "last", ["1h"]),
            Aggregation("amount", "stddev", ["3h"]),
            Aggregation("amount", "approx_count_distinct", ["10m", "3h"], name="distinct_amounts"),
            Aggregation(col("approved") == False, "mean", ["1h"], name="decline_rate"),  # noqa: E712
        ],
        where=col("amount") > -40,
    )


VIEW = _view()
SPEC = spec_of(VIEW)


@pytest.fixture(scope="module")
def spark():
    return get_engine(None).spark


@pytest.fixture(scope="module")
def online():
    config = RepoConfig(
        project="t" + uuid.uuid4().hex[:10],
        registry="/tmp/unused-registry.db",
        provider="local",
        online_store={
            "type": "fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
            "url": "redis://127.0.0.1:6379/9",
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    return RedisOnlineStore(), config


def _table(events: list[tuple]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([e[0] for e in events], pa.int64()),
            "amount": pa.array([e[2] for e in events], pa.float64()),
            "approved": pa.array([e[3] for e in events], pa.bool_()),
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=e[1]) for e in events], pa.timestamp("us", tz="UTC")
            ),
        }
    )


def _batch(spark, arrived: pa.Table, at: datetime, customers: list[int]) -> pd.DataFrame:
    requests = pa.table(
        {
            "customer_id": pa.array(customers, pa.int64()),
            "event_timestamp": pa.array([at] * len(customers), pa.timestamp("us", tz="UTC")),
        }
    )
    names = {f.name: f.name for f in SPEC.features}
    frame = as_of(
        spark.createDataFrame(requests),
        "event_timestamp",
        ["customer_id"],
        SPEC,
        spark.createDataFrame(arrived),
        names,
    )
    return frame.toPandas().sort_values("customer_id").reset_index(drop=True)


def _stream(store, config, customers: list[int], at: datetime) -> dict[str, list]:
    state = store.state(config)
    read = TileRead(state.layout, VIEW, state.codec(VIEW), [f.name for f in SPEC.features])
    result = state.read([read], {"customer_id": customers}, len(customers), now_us=int(at.timestamp() * 1e6))[
        0
    ]
    return dict(zip(read.features, result.values, strict=True))


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and np.isnan(a)):
        return b is None or (isinstance(b, float) and np.isnan(b))
    return (
        b is not None
        and not (isinstance(b, float) and np.isnan(b))
        and a == pytest.approx(b, rel=1e-9, abs=1e-9)
    )


amounts = st.one_of(
    st.none(), st.just(float("nan")), st.floats(-60, 500, allow_nan=False).map(lambda x: round(x, 2))
)
events_strategy = st.lists(
    st.tuples(st.integers(1, 3), st.integers(0, 4 * 3600), amounts, st.booleans()), min_size=1, max_size=30
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=events_strategy,
    lateness=st.lists(st.integers(0, 1800), min_size=30, max_size=30),
    restart=st.integers(0, 30),
    lag=st.lists(st.integers(0, 3 * 3600), min_size=REQUESTS, max_size=REQUESTS),
)
def test_batch_and_stream_agree_at_request_times(spark, online, events, lateness, restart, lag):
    store, base = online
    config = base.model_copy(update={"project": "t" + uuid.uuid4().hex[:10]})
    arrival = sorted(range(len(events)), key=lambda i: events[i][1] + lateness[i])  # out of order, late
    table = _table([events[i] for i in arrival])
    offsets = np.arange(table.num_rows)
    customers = [1, 2, 3, 4]  # 4 never has events
    try:
        for q, quarter in enumerate(np.array_split(offsets, REQUESTS)):
            if len(quarter):
                store.write_events(
                    config,
                    VIEW,
                    table.slice(quarter[0], len(quarter)),
                    ["t/0"] * len(quarter),
                    quarter,
                    "event_timestamp",
                )
            if q == 1 and restart:  # a restart: uncommitted offsets are delivered again
                again = offsets[: min(restart, int(quarter[-1]) + 1 if len(quarter) else 0)]
                if len(again):
                    store.write_events(
                        config,
                        VIEW,
                        table.slice(0, len(again)),
                        ["t/0"] * len(again),
                        again,
                        "event_timestamp",
                    )
            seen = int(quarter[-1]) + 1 if len(quarter) else 0
            if not seen:
                continue
            arrived = table.slice(0, seen)
            newest = max(arrived["event_timestamp"].to_pylist())
            at = newest + timedelta(seconds=lag[q])  # serving reads at the present: after every arrival
            batch = _batch(spark, arrived, at, customers)
            stream = _stream(store, config, customers, at)
            want = expected(
                SPEC,
                arrived.to_pandas(),
                pd.DataFrame({"customer_id": customers, "event_timestamp": [at] * 4}),
            )
            for f in SPEC.features:
                for i in range(len(customers)):
                    b, s, w = batch[f.name][i], stream[f.name][i], want[f.name][i]
                    assert _same(b, s), (f.name, customers[i], "batch", b, "stream", s)
                    assert _same(s, w), (f.name, customers[i], "stream", s, "reference", w)
    finally:
        store.teardown(config, [VIEW], [])
