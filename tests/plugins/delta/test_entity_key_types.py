"""#21.8: entity keys of the wrong type are cast only when exact and lossless (``2.0`` and ``"2"`` are the
integer key 2; an integer 7 is the string key "7"), otherwise one clear error counting them, never
quoting them; the same rule in retrieval (pandas, SQL and Spark entity frames) and online reads
(Feast's API, FastReader).

Real Delta tables, embedded Sail, the machine's Redis (db 9, a unique project per test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from feast import Entity, FeatureView, Field
from feast.types import Int64, String
from feast.value_type import ValueType

from fs_platform.errors import EntityKeyTypeError, InvalidArgument
from fs_platform.plugins.delta import DeltaSource
from fs_platform.plugins.redis_store.fast_read import FastReader
from tests.plugins.delta.delta_helpers import redis_delta_store, write_table

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture
def store(tmp_path, engine):
    ts = [T0 - timedelta(hours=1)] * 3
    write_table(
        tmp_path / "cust", pd.DataFrame({"customer_id": [1, 2, 3], "n": [10, 20, 30], "event_timestamp": ts})
    )
    write_table(
        tmp_path / "merch",
        pd.DataFrame({"merchant_id": ["7", "8", "x"], "m": [70, 80, 90], "event_timestamp": ts}),
    )
    fs = redis_delta_store(tmp_path, REDIS_URL)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)

    def view(name, entity, key, dtype, feature):
        source = DeltaSource(name=name, path=str(tmp_path / name), timestamp_field="event_timestamp")
        schema = [Field(name=key, dtype=dtype), Field(name=feature, dtype=Int64)]
        return FeatureView(name=name, entities=[entity], ttl=timedelta(days=1), schema=schema, source=source)

    fs.apply(
        [
            customer,
            merchant,
            view("cust", customer, "customer_id", Int64, "n"),
            view("merch", merchant, "merchant_id", String, "m"),
        ]
    )
    fs.materialize(T0 - timedelta(days=1), T0 + timedelta(seconds=1))
    yield fs
    fs.teardown()


def _retrieve(store, keys: list, features=("cust:n",)) -> list:
    df = pd.DataFrame({"customer_id": keys, "event_timestamp": [T0] * len(keys)})
    out = store.get_historical_features(df, list(features)).to_df()
    return [None if pd.isna(v) else v for v in out[features[0].split(":")[1]]]


def test_retrieval_casts_exact_keys_only(store):
    assert _retrieve(store, [2, 1]) == [20, 10]
    assert _retrieve(store, [2.0, 1.0, None]) == [20, 10, None]  # whole floats (NaN: no key)
    assert _retrieve(store, ["2", "1"]) == [20, 10]  # canonical integer strings
    for bad, count in (([2.5, 1.0], 1), (["02", "1", "2.0", "x"], 3), ([True, 1], 1)):
        with pytest.raises(
            EntityKeyTypeError, match=rf"{count} value\(s\) of join key 'customer_id' are not exactly INT64"
        ):
            _retrieve(store, bad)
    merch = pd.DataFrame({"merchant_id": [7, 8], "event_timestamp": [T0] * 2})  # integers into a string key
    assert store.get_historical_features(merch, ["merch:m"]).to_df()["m"].tolist() == [70, 80]
    with pytest.raises(
        EntityKeyTypeError, match="1 value.s. of join key 'merchant_id' are not exactly STRING"
    ):
        store.get_historical_features(merch.assign(merchant_id=[7.0, "8"]), ["merch:m"]).to_df()


def test_sql_entity_df_follows_the_same_rule(store):
    ts = f"TIMESTAMP '{T0:%Y-%m-%d %H:%M:%S}'"
    good = f"SELECT '2' AS customer_id, {ts} AS event_timestamp UNION ALL SELECT '1', {ts}"
    assert store.get_historical_features(good, ["cust:n"]).to_df()["n"].tolist() == [20, 10]
    floats = f"SELECT CAST(2.0 AS DOUBLE) AS customer_id, {ts} AS event_timestamp"
    assert store.get_historical_features(floats, ["cust:n"]).to_df()["n"].tolist() == [20]
    bad = f"SELECT '02' AS customer_id, {ts} AS event_timestamp UNION ALL SELECT '1', {ts}"
    with pytest.raises(EntityKeyTypeError, match="1 value.s. of join key 'customer_id'") as err:
        store.get_historical_features(bad, ["cust:n"]).to_df()
    assert "'02'" not in str(err.value)
    fraction = f"SELECT CAST(2.5 AS DOUBLE) AS customer_id, {ts} AS event_timestamp"
    with pytest.raises(EntityKeyTypeError, match="1 value.s. of join key 'customer_id'"):
        store.get_historical_features(fraction, ["cust:n"]).to_df()


def test_online_reads_follow_the_same_rule(store):
    def online(keys):
        return store.get_online_features(["cust:n"], {"customer_id": keys}).to_dict()

    assert online([2, 1]) == {"customer_id": [2, 1], "n": [20, 10]}
    assert online(["2", 1.0]) == {"customer_id": [2, 1], "n": [20, 10]}  # refused before #21.8
    for bad in (["02"], [2.5], [True], ["2.0"]):
        with pytest.raises(EntityKeyTypeError, match="join key 'customer_id' is not exactly INT64"):
            online(bad)
    assert store.get_online_features(["merch:m"], {"merchant_id": [7, "8"]}).to_dict()["m"] == [70, 80]
    reader = FastReader(store, ["cust:n"])  # fs serve's path: the error is an InvalidArgument (HTTP 400)
    assert reader.read({"customer_id": ["2", 1.0, 3]}) == {"n": [20, 10, 30]}
    with pytest.raises(InvalidArgument, match="2 value.s. of join key 'customer_id' are not exactly INT64"):
        reader.read({"customer_id": ["02", 2.5, 1]})
