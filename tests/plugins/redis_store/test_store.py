"""The store through Feast's own API, on every backend (machine Redis, embedded Valkey, Cluster)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pandas as pd
import pytest
import redis
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from tests.plugins.redis_store.conftest import N_CUSTOMERS, NOW, customer_rows, raw_client

pytestmark = pytest.mark.redis

TXN = [
    "txn:amount",
    "txn:count",
    "txn:country",
    "txn:ratio",
    "txn:flag",
    "txn:level",
    "txn:tags",
    "txn:seen_at",
]


def _expected(ids):
    df = customer_rows().set_index("customer_id")
    out = {"customer_id": list(ids)}
    for ref in TXN:
        col = ref.split(":")[1]
        vals = []
        for i in ids:
            if i not in df.index:
                vals.append(None)
                continue
            v = df.loc[i, col]
            if col == "ratio":
                v = float(pd.Series([v], dtype="float32")[0])
            elif col == "seen_at":
                v = v.to_pydatetime().replace(microsecond=0)
            elif col == "tags":
                v = list(v)
            elif col == "country" and v is None:
                v = None
            else:
                v = v.item() if hasattr(v, "item") else v
            vals.append(v)
        out[col] = vals
    return out


def test_materialize_then_get_online_features(repo):
    repo.materialize()
    ids = [1, 2, 7, N_CUSTOMERS, 999]
    got = repo.store.get_online_features(TXN, [{"customer_id": i} for i in ids]).to_dict()
    assert got == _expected(ids)
    statuses = repo.store.get_online_features(
        ["txn:amount"], [{"customer_id": 1}, {"customer_id": 999}]
    ).proto
    assert list(statuses.results[1].statuses) == [FieldStatus.PRESENT, FieldStatus.NOT_FOUND]


def test_many_views_one_round_trip(repo, backend):
    repo.materialize()
    client = raw_client(backend)
    before = _mget_calls(client)
    ids = list(range(1, 11))
    got = repo.store.get_online_features(
        TXN + ["profile:count", "profile:country"], {"customer_id": ids}, full_feature_names=True
    ).to_dict()
    assert got["profile__count"] == ids and got["txn__amount"] == [i * 1.5 for i in ids]
    calls = sum(_mget_calls(client).values()) - sum(before.values())
    if backend.get("mode") == "cluster":
        # both views of an entity share a hash slot: one MGET per entity, all in one pipeline
        # (redis-py sends a pipeline to each node at once: one round trip per node)
        assert calls == len(ids)
    else:
        assert calls == 1


def _mget_calls(client) -> dict:
    if isinstance(client, redis.RedisCluster):
        nodes = {n.name: client.get_redis_connection(n) for n in client.get_primaries()}
    else:
        nodes = {"standalone": client}
    return {name: c.info("commandstats").get("cmdstat_mget", {}).get("calls", 0) for name, c in nodes.items()}


def test_push_is_ordered_by_event_time(repo):
    def push(amount, minutes_ago):
        df = pd.DataFrame(
            {
                "customer_id": [5],
                "amount": [amount],
                "count": [1],
                "country": ["x"],
                "ratio": [0.5],
                "flag": [True],
                "level": [1],
                "tags": [[1]],
                "seen_at": [NOW],
                "event_timestamp": [NOW - timedelta(minutes=minutes_ago)],
                "created": [NOW],
            }
        )
        repo.store.push("txn_push", df)

    def amount():
        return repo.store.get_online_features(["txn:amount"], [{"customer_id": 5}]).to_dict()["amount"][0]

    push(10.0, minutes_ago=5)
    assert amount() == 10.0
    push(20.0, minutes_ago=9)  # older event: no-op
    assert amount() == 10.0
    push(30.0, minutes_ago=1)
    assert amount() == 30.0


def test_async_read_path_matches_sync(repo):
    repo.materialize()
    rows = {"customer_id": [1, 2, 3, 999]}
    sync = repo.store.get_online_features(TXN, rows).to_dict()
    got = asyncio.run(repo.store.get_online_features_async(TXN, rows)).to_dict()
    assert got == sync


def test_odfv_generic_path(repo):
    repo.materialize()
    got = repo.store.get_online_features(
        ["txn:amount", "pay_vs_amount:pay_ratio"], {"customer_id": [2, 4], "pay": [6.0, 3.0]}
    ).to_dict()
    assert got["amount"] == [3.0, 6.0] and got["pay_ratio"] == [2.0, 0.5]


def test_delete_view_on_apply_keeps_other_views(repo, backend):
    repo.materialize()
    repo.store.apply([], objects_to_delete=[repo.profile], partial=False)
    client = raw_client(backend)
    ns = f"fs:{repo.project}:"
    keys = {k.decode() for k in client.scan_iter(match=ns + "*", count=1000)}
    assert not any(k.endswith(":profile") for k in keys)
    assert sum(k.endswith(":txn") for k in keys) == N_CUSTOMERS


def test_teardown_removes_only_this_project(tmp_path, backend):
    from tests.plugins.redis_store.conftest import Repo

    a, b = Repo(tmp_path / "a", backend), Repo(tmp_path / "b", backend)
    try:
        a.materialize()
        b.materialize()
        a.store.teardown()
        client = raw_client(backend)
        assert not list(client.scan_iter(match=f"fs:{a.project}:*", count=1000))
        assert len(list(client.scan_iter(match=f"fs:{b.project}:*", count=1000))) == 2 * N_CUSTOMERS + 1
    finally:
        b.close()


def test_fast_reader_matches_feast_api(repo):
    from fs_platform.plugins.redis_store.fast_read import FastReader

    repo.materialize()
    features = TXN + ["profile:count"]
    ids = [1, 2, 7, 999]
    expected = repo.store.get_online_features(
        features, {"customer_id": ids}, full_feature_names=True
    ).to_dict()
    expected.pop("customer_id")
    reader = FastReader(repo.store, features, full_feature_names=True)
    assert reader.read({"customer_id": ids}) == expected
    assert asyncio.run(reader.read_async({"customer_id": ids})) == expected
    assert (
        reader.read_arrow({"customer_id": ids}).column("txn__amount").to_pylist() == expected["txn__amount"]
    )


def test_arrow_engine_materializes_the_same_rows(tmp_path, backend):
    from tests.plugins.redis_store.conftest import Repo

    repo = Repo(
        tmp_path,
        backend,
        batch_engine={"type": "fs_platform.plugins.redis_store.engine.RedisArrowEngine", "batch_rows": 7},
    )
    try:
        repo.materialize()
        ids = [1, 2, 7, N_CUSTOMERS, 999]
        assert repo.store.get_online_features(TXN, {"customer_id": ids}).to_dict() == _expected(ids)
        job = repo.store._get_provider().batch_engine.materialize(repo.store.registry, _task(repo))[
            0
        ]  # re-running the same window changes nothing
        assert (job.result.written, job.result.skipped_stale) == (0, N_CUSTOMERS)
    finally:
        repo.close()


def _task(repo):
    from feast.infra.common.materialization_job import MaterializationTask

    return MaterializationTask(
        project=repo.project,
        feature_view=repo.store.get_feature_view("txn"),
        start_time=NOW - timedelta(days=2),
        end_time=NOW + timedelta(seconds=1),
    )
