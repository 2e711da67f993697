"""Aggregation views online: tiles written from events (as the ingestor does) and merged at read time
equal the independent reference at random request times, with late, duplicated and replayed events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import Entity, RepoConfig
from feast.value_type import ValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fs_platform.aggregation import Aggregation, col, spec_of
from fs_platform.aggregation.tiles import Merger
from fs_platform.errors import OnlineWriteError
from fs_platform.plugins.redis_store.online_store import RedisOnlineStore
from fs_platform.plugins.redis_store.tile_store import MARKS, TileRead
from tests.aggregation.reference import expected
from tests.aggregation.views import events_view
from tests.plugins.redis_store.conftest import STORE_TYPE

pytestmark = pytest.mark.redis

# Keys expire in real time once their newest tile leaves every window, so the events of these tests
# start now (reads pass their own request time, later than the clock).
T0 = datetime.now(UTC).replace(second=0, microsecond=0)
US = 1_000_000


def _view():
    return events_view(
        [
            Aggregation("*", "count", ["10m", "1h"], name="n"),
            Aggregation("amount", "sum", ["10m", "1h"]),
            Aggregation("amount", "mean", ["1h"]),
            Aggregation("amount", "min", ["1h"]),
            Aggregation("amount", "max", ["10m"]),
            Aggregation("amount", "last", ["1h"]),
            Aggregation("amount", "stddev", ["1h"]),
            Aggregation("amount", "approx_count_distinct", ["1h"], name="distinct_amounts"),
            Aggregation(col("approved") == False, "mean", ["1h"], name="decline_rate"),  # noqa: E712
        ],
        where=col("amount") < 900,
    )


@pytest.fixture
def online(backend):
    project = "t" + uuid.uuid4().hex[:10]
    config = RepoConfig(
        project=project,
        registry="/tmp/unused-registry.db",
        provider="local",
        online_store={"type": STORE_TYPE, **backend},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    store = RedisOnlineStore()
    view = _view()
    yield store, config, view
    store.teardown(config, [view], [])


def _events(rows: list[tuple]) -> pa.Table:
    """rows: (customer_id, seconds after T0, amount or None, approved)"""
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "amount": pa.array([r[2] for r in rows], pa.float64()),
            "approved": pa.array([r[3] for r in rows], pa.bool_()),
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=r[1]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
        }
    )


def _read(store, config, view, customers: list[int], at: datetime) -> dict[str, list]:
    state = store.state(config)
    read = TileRead(state.layout, view, state.codec(view), [f.name for f in view.features])
    result = state.read([read], {"customer_id": customers}, len(customers), now_us=int(at.timestamp() * US))[
        0
    ]
    return dict(zip(read.features, result.values, strict=True))


def _assert_equal(got: dict[str, list], want: pd.DataFrame, view) -> None:
    for f in view.features:
        g, w = got[f.name], want[f.name].tolist()
        for a, b in zip(g, w, strict=True):
            if b is None or (isinstance(b, float) and np.isnan(b)):
                assert a is None, (f.name, g, w)
            else:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), (f.name, g, w)


events_strategy = st.lists(
    st.tuples(
        st.integers(1, 3),  # customer
        st.integers(0, 3 * 3600),  # seconds after T0
        st.one_of(st.none(), st.floats(-50, 1000, allow_nan=False).map(lambda x: round(x, 2))),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=events_strategy,
    lateness=st.lists(st.integers(0, 1200), min_size=40, max_size=40),
    replay=st.integers(0, 40),
    delays=st.lists(st.integers(0, 900), min_size=4, max_size=4),
)
def test_tiles_equal_reference_at_request_times(online, events, lateness, replay, delays):
    """Events arrive out of order (each up to 20 min late), a prefix is delivered twice (a restart that
    replays uncommitted offsets); at request times after each quarter of the stream the online value
    equals the reference over the events that had arrived."""
    store, config, view = online
    spec = spec_of(view)
    config = config.model_copy(update={"project": "t" + uuid.uuid4().hex[:10]})
    arrival = sorted(range(len(events)), key=lambda i: events[i][1] + lateness[i])
    table = _events([events[i] for i in arrival])
    offsets = np.arange(len(arrival))
    quarters = np.array_split(np.arange(len(arrival)), 4)
    seen = 0
    try:
        for q, delay in zip(quarters, delays, strict=True):
            if not len(q):
                continue
            part = table.slice(q[0], len(q))
            store.write_events(config, view, part, ["t/0"] * len(q), offsets[q], "event_timestamp")
            if replay and q[0] == 0:  # redeliver a prefix: no-op
                again = min(replay, len(q))
                result = store.write_events(
                    config, view, table.slice(0, again), ["t/0"] * again, offsets[:again], "event_timestamp"
                )
                assert result.applied == 0
            seen = q[-1] + 1
            arrived = table.slice(0, seen).to_pandas()
            at = max(arrived["event_timestamp"]).to_pydatetime() + timedelta(seconds=delay)
            requests = pd.DataFrame({"customer_id": [1, 2, 3, 4], "event_timestamp": [at] * 4})
            want = expected(spec, arrived, requests)
            many = _read(store, config, view, [1, 2, 3, 4], at)
            _assert_equal(many, want, view)
            for i, customer in enumerate([1, 2, 3, 4]):  # the single-entity read (its own code path)
                one = _read(store, config, view, [customer], at)
                for f, v in one.items():
                    assert (v[0] is None) == (many[f][i] is None), f
                    assert v[0] is None or v[0] == pytest.approx(many[f][i], rel=1e-12), f
    finally:
        store.teardown(config, [view], [])


@pytest.mark.parametrize("backend", ["redis", "valkey", "cluster"], indirect=True)
def test_redelivery_is_a_noop_and_values_decay(online):
    store, config, view = online
    events = _events([(1, 0, 10.0, True), (1, 60, 20.0, False), (1, 400, 5.0, True), (2, 30, 7.0, None)])
    first = store.write_events(config, view, events, ["t/0"] * 4, np.arange(4), "event_timestamp")
    again = store.write_events(config, view, events, ["t/0"] * 4, np.arange(4), "event_timestamp")
    assert (first.applied, again.applied, again.duplicate) == (4, 0, 4)
    # The same offsets from another partition are other events.
    other = store.write_events(config, view, events.slice(0, 1), ["t/1"], np.arange(1), "event_timestamp")
    assert other.applied == 1
    soon = _read(store, config, view, [1, 2, 9], T0 + timedelta(seconds=400))
    assert soon["n_10m"] == [4, 1, 0]
    assert soon["amount_sum_10m"] == [45.0, 7.0, 0.0]
    assert soon["amount_last_1h"] == [5.0, 7.0, None]
    # Two hours later without new events: the windows have emptied (no frozen values).
    later = _read(store, config, view, [1, 2], T0 + timedelta(hours=2))
    assert later["n_10m"] == [0, 0] and later["n_1h"] == [0, 0]
    assert later["amount_mean_1h"] == [None, None]


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_state_is_bounded_by_tiles_not_events(online):
    """A day of events for one customer keeps at most the tiles of the longest windows."""
    store, config, view = online
    spec = spec_of(view)
    n = 3000
    rows = [(1, i * 29, 1.0, True) for i in range(n)]  # one event every 29 s for a day
    store.write_events(config, view, _events(rows), ["t/0"] * n, np.arange(n), "event_timestamp")
    state = store.state(config)
    key = state.layout.arrow_keys(
        "agg", ["customer_id"], [ValueType.INT64], [lambda v: str(v)], [pa.chunked_array([[1]])]
    )[0]
    merger = Merger(spec)
    small = state.client.get(key)
    store.write_events(
        config,
        view,
        _events([(1, 2 * 86400, 1.0, True)] * 1),
        ["t/0"],
        np.arange(n, n + 1),
        "event_timestamp",
    )
    blob = state.client.get(key)
    size = len(merger.empty)
    assert len(blob) == len(small)  # a fixed size, whatever the number of events
    records = np.frombuffer(blob[:size], "<f8")[merger.head :].reshape(merger.records, merger.width)
    held = int(np.isfinite(records[:, 0]).sum())
    assert 0 < held <= sum(g.tiles + 1 for g in spec.granularities)
    assert blob[size:] == f"t/0={n};".encode()  # the offset marks follow the tiles: one key per entity
    assert not state.client.exists(key + MARKS)
    # Marks that grow (a longer offset) rewrite the string whole: growing it in place would make Redis
    # allocate about twice its size.
    later = _events([(1, 2 * 86400 + 1, 1.0, True)])
    store.write_events(config, view, later, ["t/0"], np.array([10**9]), "event_timestamp")
    blob = state.client.get(key)
    assert blob[size:] == f"t/0={10**9};".encode()
    assert state.client.memory_usage(key, samples=0) < 1.4 * len(blob)


@pytest.mark.parametrize("backend", ["redis", "cluster"], indirect=True)
def test_marks_kept_by_an_earlier_version_in_a_hash_are_honoured_then_folded_in(online):
    """An entity written before the marks moved into the string (tiles alone, marks in a hash beside
    them): a redelivery of what the hash marks adds nothing, new offsets count, and the hash is folded
    into the string and deleted."""
    store, config, view = online
    state = store.state(config)
    key = state.layout.arrow_keys(
        "agg", ["customer_id"], [ValueType.INT64], [lambda v: str(v)], [pa.chunked_array([[3]])]
    )[0]
    rows = [(3, 10 * i, float(i), True) for i in range(8)]
    table, parts = _events(rows), ["t/0", "t/1"] * 4
    store.write_events(config, view, table.slice(0, 4), parts[:4], np.array([0, 0, 1, 1]), "event_timestamp")
    size = len(Merger(spec_of(view)).empty)
    blob = state.client.get(key)
    assert blob[size:] == b"t/0=1;t/1=1;"
    state.client.set(key, blob[:size], keepttl=True)  # the earlier layout: tiles only, marks in a hash
    state.client.hset(key + MARKS, mapping={"_o:t/0": "1", "_o:t/1": "1"})
    again = store.write_events(
        config, view, table, parts, np.array([0, 0, 1, 1, 2, 2, 3, 3]), "event_timestamp"
    )
    assert again.applied == 4 and again.duplicate == 4
    assert state.client.get(key)[size:] == b"t/0=3;t/1=3;" and not state.client.exists(key + MARKS)
    at = T0 + timedelta(seconds=80)
    want = expected(
        spec_of(view), table.to_pandas(), pd.DataFrame({"customer_id": [3], "event_timestamp": [at]})
    )
    _assert_equal(_read(store, config, view, [3], at), want, view)


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_a_partition_name_that_would_corrupt_the_marks_is_refused(online):
    store, config, view = online
    with pytest.raises(OnlineWriteError, match="partition names"):
        store.write_events(
            config, view, _events([(1, 0, 1.0, True)]), ["t=0"], np.arange(1), "event_timestamp"
        )


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_row_writes_to_an_aggregation_view_are_refused(online):
    store, config, view = online
    with pytest.raises(OnlineWriteError, match="aggregation view"):
        store.write_arrow(config, view, _events([(1, 0, 1.0, True)]))


@pytest.mark.parametrize("backend", ["redis", "cluster"], indirect=True)
def test_a_row_left_by_the_view_before_it_aggregated_reads_as_no_tiles_and_is_replaced(online):
    store, config, view = online
    state = store.state(config)
    key = state.layout.view_affixes("agg")[0] + "customer_id=1" + state.layout.view_affixes("agg")[1]
    state.client.set(key, b"[1,0,1,2.0]")  # a plain row under the same key
    assert _read(store, config, view, [1, 2], T0)["n_1h"] == [0, 0]
    store.write_events(config, view, _events([(1, 0, 3.0, True)]), ["t/0"], np.arange(1), "event_timestamp")
    assert _read(store, config, view, [1, 2], T0)["n_1h"] == [1, 0]


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_feast_materialize_refuses_an_aggregation_view_with_a_pointer(online, tmp_path):
    from feast import FeatureStore

    _, config, view = online
    engine = {"type": "fs_platform.plugins.redis_store.engine.RedisArrowEngine"}
    store = FeatureStore(
        config=config.model_copy(
            update={"batch_engine_config": engine, "registry": str(tmp_path / "registry.db")}
        )
    )
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    store.apply([customer, view])
    with pytest.raises(OnlineWriteError, match="fs materialize"):
        store.materialize(T0 - timedelta(hours=1), T0, ["agg"])


@pytest.mark.parametrize("backend", ["redis", "cluster"], indirect=True)
def test_a_replay_starting_inside_a_batch_applies_exactly_the_new_events(online):
    """After a crash the consumer resumes from its last commit: the redelivered batch holds events
    already applied and new ones, for the same entities (pre-aggregated blocks straddle the marks)."""
    store, config, view = online
    spec = spec_of(view)
    rows = [(1 + i % 2, 20 * i, float(i), i % 3 != 0) for i in range(30)]
    table = _events(rows)
    parts = ["t/0" if i % 3 else "t/1" for i in range(30)]
    offsets = np.array([i // 3 if p == "t/1" else i for i, p in enumerate(parts)])
    first = store.write_events(config, view, table.slice(0, 12), parts[:12], offsets[:12], "event_timestamp")
    again = store.write_events(config, view, table.slice(6, 24), parts[6:], offsets[6:], "event_timestamp")
    assert first.applied == 12 and again.applied == 18 and again.duplicate == 6
    at = T0 + timedelta(seconds=20 * 29)
    want = expected(
        spec, table.to_pandas(), pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [at] * 2})
    )
    _assert_equal(_read(store, config, view, [1, 2], at), want, view)


@pytest.mark.parametrize("backend", ["redis", "cluster"], indirect=True)
def test_patched_writes_keep_the_layout_and_move_the_expiry_with_the_newest_tile(online):
    """Writes to an existing ring splice it (the touched records only): the string keeps its size, the
    values equal a fresh write of the same events, the key's expiry stays until the newest tile moves, and a
    replay into a scratch namespace (expire=False) leaves no expiry."""
    store, config, view = online
    state = store.state(config)
    key = state.layout.arrow_keys(
        "agg", ["customer_id"], [ValueType.INT64], [lambda v: str(v)], [pa.chunked_array([[7]])]
    )[0]
    rows = [(7, 0, 5.0, True), (7, 30, 7.0, False), (7, 20 * 60, 9.0, True), (7, 20 * 60 + 5, 1.0, True)]
    table = _events(rows)
    store.write_events(config, view, table.slice(0, 1), ["t/0"], np.arange(1), "event_timestamp")
    size, first_ttl = len(state.client.get(key)), state.client.pttl(key)
    assert first_ttl > 0
    store.write_events(config, view, table.slice(1, 1), ["t/0"], np.arange(1, 2), "event_timestamp")
    assert len(state.client.get(key)) == size
    assert abs(state.client.pttl(key) - first_ttl) < 2000  # same newest tile: the expiry stays
    store.write_events(config, view, table.slice(2, 2), ["t/0"] * 2, np.arange(2, 4), "event_timestamp")
    assert len(state.client.get(key)) == size
    assert state.client.pttl(key) > first_ttl + 15 * 60 * 1000  # the newest tile moved 20 minutes on
    at = T0 + timedelta(minutes=25)
    want = expected(
        spec_of(view), table.to_pandas(), pd.DataFrame({"customer_id": [7], "event_timestamp": [at]})
    )
    _assert_equal(_read(store, config, view, [7], at), want, view)

    store.write_events(
        config,
        view,
        _events([(7, 21 * 60, 2.0, True)]),
        ["t/0"],
        np.arange(4, 5),
        "event_timestamp",
        expire=False,
    )
    assert state.client.pttl(key) == -1 and len(state.client.get(key)) == size


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_a_long_write_reports_each_round_trip(online):
    """``write_events(progress=...)`` is called after every round trip, so the ingestor can tell a long
    write (a backlog of many entities) from a hung Redis."""
    store, config, view = online
    n = 5_000  # distinct customers: three round trips of up to ~2,000 keys
    events = _events([(c, c % 600, 1.0, True) for c in range(n)])
    beats = []
    result = store.write_events(
        config, view, events, ["t/0"] * n, np.arange(n), "event_timestamp", progress=lambda: beats.append(1)
    )
    assert result.applied == n
    assert len(beats) == 3
