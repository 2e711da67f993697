"""Event-time ordering of the one batch-write API, on every backend, plus a hypothesis check."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fs_platform.errors import OnlineWriteError, ValueDoesNotFitError
from fs_platform.plugins.redis_store import WriteResult
from tests.plugins.redis_store.conftest import MACHINE_URL, Repo

pytestmark = pytest.mark.redis

T0 = datetime(2030, 1, 1, tzinfo=UTC)  # future events: nothing expires during the test


def row(cid: int, amount: float, ev_s: int, ct_s: int | None = None):
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=cid)])
    ct = None if ct_s is None else T0 + timedelta(seconds=ct_s)
    return (
        key,
        {"count": Value(int64_val=int(amount)), "country": Value(string_val=str(amount))},
        T0 + timedelta(seconds=ev_s),
        ct,
    )


def read(repo, ids):
    return repo.store.get_online_features(
        ["profile:count", "profile:country"], {"customer_id": list(ids)}
    ).to_dict()["count"]


def test_ordering_rules(repo):
    store, cfg, fv = repo.online_store, repo.config, repo.profile
    assert store.write_batch(cfg, fv, [row(1, 10, ev_s=10), row(2, 20, ev_s=10)]) == WriteResult(2, 0, 0)
    assert store.write_batch(cfg, fv, [row(1, 5, ev_s=5)]) == WriteResult(0, 1, 0)  # older: no-op
    assert store.write_batch(cfg, fv, [row(1, 10, ev_s=10)]) == WriteResult(0, 1, 0)  # redelivery
    assert store.write_batch(cfg, fv, [row(2, 21, ev_s=10, ct_s=1)]) == WriteResult(
        1, 0, 0
    )  # same ev, later ct
    assert store.write_batch(cfg, fv, [row(2, 19, ev_s=10, ct_s=0)]) == WriteResult(
        0, 1, 0
    )  # same ev, older ct
    # same ev and ct, other values: a correction (last write wins); the same row again is a no-op
    assert store.write_batch(cfg, fv, [row(4, 40, ev_s=10, ct_s=1)]).written == 1
    assert store.write_batch(cfg, fv, [row(4, 41, ev_s=10, ct_s=1)]) == WriteResult(1, 0, 0)
    assert store.write_batch(cfg, fv, [row(4, 41, ev_s=10, ct_s=1)]) == WriteResult(0, 1, 0)
    # out-of-order rows inside one batch end at the newest
    assert store.write_batch(cfg, fv, [row(3, 3, ev_s=3), row(3, 1, ev_s=1), row(3, 2, ev_s=2)]).written == 1
    assert read(repo, [1, 2, 3, 4]) == [10, 21, 3, 41]


def test_arrow_write_api(repo):
    table = pa.table(
        {
            "customer_id": pa.array([7, 8], pa.int64()),
            "count": pa.array([70, 80], pa.int64()),
            "country": ["a", "b"],
            "event_timestamp": pa.array([T0, T0], pa.timestamp("us", "UTC")),
        }
    )
    assert repo.online_store.write_arrow(repo.config, repo.profile, table) == WriteResult(2, 0, 0)
    assert repo.online_store.write_arrow(repo.config, repo.profile, table) == WriteResult(0, 2, 0)
    assert read(repo, [7, 8]) == [70, 80]
    bad = table.set_column(1, "count", pa.array(["x", "y"]))
    with pytest.raises(OnlineWriteError, match="profile:count is INT64"):
        repo.online_store.write_arrow(repo.config, repo.profile, bad)
    # An out-of-range value is refused without quoting it (values may be PII; errors reach logs).
    huge = table.set_column(1, "count", pa.array([2**63 + 5, 1], pa.uint64()))
    with pytest.raises(
        ValueDoesNotFitError, match="'profile': 1 value.s. of feature 'count' do not fit"
    ) as err:
        repo.online_store.write_arrow(repo.config, repo.profile, huge)
    assert str(2**63 + 5) not in str(err.value)


def test_wrong_value_type_and_unknown_feature_are_rejected(repo):
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=1)])
    with pytest.raises(OnlineWriteError, match="INT64, got a string_val"):
        repo.online_store.write_batch(
            repo.config, repo.profile, [(key, {"count": Value(string_val="x")}, T0, None)]
        )
    with pytest.raises(OnlineWriteError, match="no feature 'nope'"):
        repo.online_store.write_batch(
            repo.config, repo.profile, [(key, {"nope": Value(int64_val=1)}, T0, None)]
        )


@pytest.fixture(scope="module")
def machine_repo(tmp_path_factory):
    r = Repo(tmp_path_factory.mktemp("prop"), {"url": MACHINE_URL})
    yield r
    r.close()


events = st.lists(
    st.tuples(
        st.integers(1, 4), st.integers(0, 20), st.integers(0, 3), st.integers(0, 2)
    ),  # cid, ev, ct, writer
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events, batch=st.integers(1, 5), data=st.data())
def test_random_interleavings_end_in_newest_event(machine_repo, events, batch, data):
    """Several writers send their events in batches; batches interleave arbitrarily. Every key ends
    at the greatest (event, created) written for it, whatever the interleaving."""
    repo = machine_repo
    repo.online_store.teardown(repo.config, [], [])
    # value encodes (ev, ct) so the winner is checkable; ids are offset per example run
    rows = [(cid, ev * 10 + ct, ev, ct, w) for cid, ev, ct, w in events]
    queues = {w: [r for r in rows if r[4] == w] for w in range(3)}
    batches = {w: [q[i : i + batch] for i in range(0, len(q), batch)] for w, q in queues.items()}
    order = data.draw(st.permutations([w for w, bs in batches.items() for _ in bs]))
    written = 0
    for w in order:
        chunk = batches[w].pop(0)
        written += repo.online_store.write_batch(
            repo.config, repo.profile, [row(cid, v, ev_s=ev, ct_s=ct) for cid, v, ev, ct, _ in chunk]
        ).written
    cids = sorted({r[0] for r in rows})
    expected = [max((ev, ct) for c, _, ev, ct, _ in rows if c == cid) for cid in cids]
    assert read(repo, cids) == [ev * 10 + ct for ev, ct in expected]
    assert written >= len(cids)


def test_concurrent_writers_end_in_newest_event(machine_repo):
    repo = machine_repo
    repo.online_store.teardown(repo.config, [], [])

    def writer(offset: int):
        for ev in range(offset, 300, 4):  # each writer owns every 4th event, sent newest-first half the time
            seq = [ev] if ev % 8 else [ev, ev - 4]
            repo.online_store.write_batch(
                repo.config, repo.profile, [row(cid, e, ev_s=e) for e in seq if e >= 0 for cid in (1, 2)]
            )

    threads = [threading.Thread(target=writer, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read(repo, [1, 2]) == [299, 299]
