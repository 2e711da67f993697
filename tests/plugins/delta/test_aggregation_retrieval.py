"""Aggregation views in training (plugins.delta.aggregation_as_of and _tiles, real Sail): values as of
entity rows and rebuilt tiles against independent naive computations; through
``get_historical_features`` with plain, aggregation and on-demand views in one feature service."""

from __future__ import annotations

import importlib.util
import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import Entity, FeatureStore, FileSource, PushSource
from feast.value_type import ValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fs_platform import datagen
from fs_platform.aggregation import Aggregation, aggregation_view, col, spec_of
from fs_platform.aggregation.tiles import layout
from fs_platform.errors import OfflineStoreError, SchemaMismatchError
from fs_platform.plugins.delta import DeltaSource
from fs_platform.plugins.delta.aggregation_as_of import as_of
from fs_platform.plugins.delta.aggregation_tiles import tiles
from fs_platform.plugins.delta.offline_store import DeltaOfflineStore
from fs_platform.plugins.delta.version_pins import pinned_versions
from tests.aggregation.reference import evaluate, expected, hll_registers, hll_words
from tests.plugins.delta.delta_helpers import make_config, write_table
from tests.plugins.delta.delta_reference import point_in_time

ROOT = Path(__file__).resolve().parents[3]
BASE = datetime(2024, 3, 1, tzinfo=UTC)  # a multiple of every tile size since the epoch
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)


def _view(source=None, where=col("channel") != "test"):
    """Every function; tiles of 1m, 5m, 1h and 1d; windows of one tile (1h at 1h) up to 168 tiles
    (7d at 1h); boolean and expression inputs; a filter that drops null channels too."""
    src = source or FileSource(
        name="events", path="/nonexistent/events.parquet", timestamp_field="event_timestamp"
    )
    return aggregation_view(
        name="agg",
        entities=[customer],
        source=PushSource(name="events_push", batch_source=src),
        aggregations=[
            Aggregation("*", "count", ["10m", "1h"], name="n"),
            Aggregation("amount", "count", ["1h"]),
            Aggregation("amount", "sum", ["10m", "1h", "24h"]),
            Aggregation("amount", "mean", ["1h"]),
            Aggregation("amount", "min", ["10m", "7d"]),
            Aggregation("amount", "max", ["24h"]),
            Aggregation("amount", "last", ["1h", "7d"]),
            Aggregation("amount", "stddev", ["1h", "7d"], tile="1h"),
            Aggregation("amount", "approx_count_distinct", ["10m", "24h"], name="distinct_amounts"),
            Aggregation(col("approved"), "mean", ["1h"], name="approval_rate"),
            Aggregation(col("amount") * 2, "max", ["10m"], name="double_max"),
        ],
        where=where,
    )


VIEW = _view()
SPEC = spec_of(VIEW)


@pytest.fixture(scope="module")
def spark(engine):
    return engine.spark


def _events(rows: list[tuple]) -> pa.Table:
    """rows: (customer_id or None, time or None, amount or None/NaN/inf, approved or None, channel)"""
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "amount": pa.array([r[2] for r in rows], pa.float64()),
            "approved": pa.array([r[3] for r in rows], pa.bool_()),
            "channel": pa.array([r[4] for r in rows], pa.string()),
        }
    )


EVENT_SCHEMA = (
    "customer_id bigint, event_timestamp timestamp, amount double, approved boolean, channel string"
)


def _event_frame(spark, table: pa.Table):
    return spark.createDataFrame(table, schema=EVENT_SCHEMA if table.num_rows == 0 else None)


def _requests(rows: list[tuple], zone: str | None) -> pd.DataFrame:
    """rows: (customer_id, time); times shown in ``zone`` (None: naive UTC)."""
    stamps = pd.to_datetime([t for _, t in rows], utc=True)
    stamps = stamps.tz_convert(zone) if zone else stamps.tz_localize(None)
    return pd.DataFrame(
        {"label": range(len(rows)), "customer_id": [k for k, _ in rows], "event_timestamp": stamps}
    )


def _run(spark, events: pa.Table, requests: pd.DataFrame, spec=SPEC, partitions: int = 3) -> pd.DataFrame:
    entity = spark.createDataFrame(
        pa.Table.from_pandas(
            requests.assign(event_timestamp=pd.to_datetime(requests["event_timestamp"], utc=True)),
            preserve_index=False,
        )
    )
    outputs = {f.name: f"out_{f.name}" for f in spec.features}
    frame = as_of(
        entity,
        "event_timestamp",
        ["customer_id"],
        spec,
        _event_frame(spark, events),
        outputs,
        partitions=partitions,
    )
    result = frame.toPandas().sort_values("label").reset_index(drop=True)
    assert len(result) == len(requests)
    return result.rename(columns={v: k for k, v in outputs.items()})


def _assert_equal(got: pd.DataFrame, want: pd.DataFrame, spec=SPEC) -> None:
    for f in spec.features:
        for i, (g, w) in enumerate(zip(got[f.name].tolist(), want[f.name].tolist(), strict=True)):
            if w is None or (isinstance(w, float) and math.isnan(w)):
                assert g is None or (isinstance(g, float) and math.isnan(g)), (f.name, i, g, w)
            elif f.function in ("count", "min", "max", "last"):
                assert g == w, (f.name, i, g, w)
            else:
                assert g == pytest.approx(w, rel=1e-9, abs=1e-9), (f.name, i, g, w)


# Times concentrate on tile edges (of 1m, 5m, 1h and 1d), a microsecond either side, and ties.
edges = st.sampled_from([timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1), timedelta(days=1)])
offsets = st.one_of(
    st.builds(lambda e, k, d: e * k + d * US, edges, st.integers(-30, 30), st.sampled_from([-1, 0, 0, 1])),
    st.builds(lambda s: timedelta(seconds=s), st.integers(-3 * 86400, 2 * 86400)),
)
amounts = st.one_of(
    st.none(),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 5.0]),
    st.floats(-60, 500, allow_nan=False).map(lambda x: round(x, 2)),
)
event_rows = st.lists(
    st.tuples(
        st.one_of(st.integers(1, 3), st.just(None)),
        st.one_of(offsets, st.just(None)),
        amounts,
        st.one_of(st.booleans(), st.none()),
        st.sampled_from(["web", "pos", "test", None]),
    ),
    max_size=40,
)
request_rows = st.lists(st.tuples(st.integers(1, 4), offsets), min_size=1, max_size=15)
zones = st.sampled_from([None, "UTC", "America/Sao_Paulo", "Asia/Kolkata"])


def _check(spark, base: datetime, events: list[tuple], requests: list[tuple], zone: str | None) -> None:
    table = _events([(k, None if o is None else base + o, x, a, c) for k, o, x, a, c in events])
    # Every request time again where an event is (ties with the event at t), and once more (duplicates).
    at = [(k, base + o) for k, o in requests] + [
        (k, base + o) for k, o, *_ in events[:5] if k and o is not None
    ]
    entity = _requests(at + at[:2], zone)
    got = _run(spark, table, entity)
    want = expected(SPEC, table.to_pandas(), entity)
    _assert_equal(got, want)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_rows, requests=request_rows, zone=zones)
def test_as_of_matches_the_reference(spark, events, requests, zone):
    _check(spark, BASE, events, requests, zone)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_rows, requests=request_rows)
def test_as_of_matches_the_reference_across_1970(spark, events, requests):
    """Tiles before the epoch: negative microseconds floor toward -inf in both."""
    _check(spark, EPOCH - timedelta(hours=2), events, requests, None)


def test_edges_of_tiles_and_windows(spark):
    """Hand-picked: an event exactly at t counts, one a microsecond later does not; the oldest tile
    of a window counts from its first microsecond; ties in time take the larger value for last; keys
    with no events and requests before any event get 0 / null."""
    t = BASE + timedelta(hours=3, minutes=7, seconds=30)  # 10m window from 02:57:00 (1m tiles)
    rows = [
        (1, t, 10.0, True, "web"),
        (1, t, 12.0, False, "web"),  # same instant: last = 12
        (1, t + US, 1000.0, True, "web"),  # after t: never counted
        (1, BASE + timedelta(hours=2, minutes=57), 3.0, True, "web"),  # first microsecond of the oldest tile
        (1, BASE + timedelta(hours=2, minutes=57) - US, 4.0, True, "web"),  # the tile before: out of 10m
        (1, BASE + timedelta(hours=2, minutes=5), 7.0, None, "pos"),  # oldest 5m tile of the 1h window
        (1, BASE + timedelta(hours=2, minutes=5) - US, 8.0, None, "pos"),  # just before it
        (1, t - timedelta(minutes=1), None, True, "web"),  # counts as an event, not as an amount
        (1, t - timedelta(minutes=2), math.nan, True, "web"),
        (1, t - timedelta(minutes=3), math.inf, False, "web"),
        (1, t - timedelta(minutes=4), 99.0, True, "test"),  # filtered out
        (1, t - timedelta(minutes=4), 98.0, True, None),  # null filter: dropped
        (2, t - timedelta(days=6, hours=23), 5.5, True, "web"),  # inside 7d only
        (None, t, 1.0, True, "web"),  # null key: never counts
        (3, None, 1.0, True, "web"),  # null time: never counts
    ]
    requests = [(1, t), (1, t + US), (1, t - US), (2, t), (3, t), (4, t), (1, BASE - timedelta(days=30))]
    entity = _requests(requests, "Asia/Kolkata")
    table = _events(rows)
    got = _run(spark, table, entity)
    want = expected(SPEC, table.to_pandas(), entity)
    _assert_equal(got, want)
    first = got.iloc[0]
    assert first["n_10m"] == 6  # t, t, 02:57:00, and the three at t-1m, t-2m, t-3m
    assert first["amount_sum_10m"] == 25.0 and first["amount_last_1h"] == 12.0
    assert first["amount_min_7d"] == 3.0 and first["amount_count_1h"] == 5
    assert got.iloc[1]["amount_last_1h"] == 1000.0
    assert got["n_10m"].tolist()[3:] == [0, 0, 0, 0]
    assert got["amount_sum_10m"].tolist()[4:] == [0.0, 0.0, 0.0]
    assert got.iloc[3]["amount_min_7d"] == 5.5 and pd.isna(got.iloc[3]["amount_min_10m"])


def test_nan_in_a_filtered_column_is_null(spark):
    """NaN read by ``where`` is null (the filter drops the event), not Spark's "NaN is the largest"."""
    src = FileSource(name="events3", path="/nonexistent/e.parquet", timestamp_field="event_timestamp")
    view = aggregation_view(
        name="agg3",
        entities=[customer],
        source=PushSource(name="p3", batch_source=src),
        aggregations=[Aggregation("*", "count", ["1h"])],
        where=col("amount") > 0,
    )
    spec = spec_of(view)
    table = _events(
        [(1, BASE + timedelta(minutes=m), x, True, "web") for m, x in ((1, math.nan), (2, 3.0), (3, None))]
    )
    entity = _requests([(1, BASE + timedelta(minutes=30))], None)
    got = _run(spark, table, entity, spec)
    assert (
        got["events_count_1h"].tolist()
        == expected(spec, table.to_pandas(), entity)["events_count_1h"].tolist()
        == [1]
    )


def test_a_hot_key_among_sparse_ones(spark):
    """Thousands of events and requests on one key (the skew the kernel is built for), a few on the
    others, several partitions: every request equals the reference."""
    rng = np.random.default_rng(3)
    n = 4000
    keys = np.where(rng.random(n) < 0.9, 1, rng.integers(2, 40, n))
    seconds = rng.integers(0, 2 * 86400, n)
    amount = np.round(rng.lognormal(3, 1, n), 2)
    rows = [
        (int(k), BASE + timedelta(seconds=int(s)), float(a), bool(a > 20), "web")
        for k, s, a in zip(keys, seconds, amount, strict=True)
    ]
    requests = [
        (int(k), BASE + timedelta(seconds=int(s)))
        for k, s in zip(rng.integers(1, 45, 150), rng.integers(0, 2 * 86400, 150), strict=True)
    ]
    requests += [(1, BASE + timedelta(seconds=int(s))) for s in rng.integers(0, 2 * 86400, 150)]
    entity = _requests(requests, None)
    table = _events(rows)
    got = _run(spark, table, entity, partitions=4)
    want = expected(SPEC, table.to_pandas(), entity)
    _assert_equal(got, want)


def test_the_fallbacks_for_huge_key_and_time_ranges_give_the_same_values(spark, monkeypatch):
    """Keys and times whose combined codes would overflow int64 take other (slower) paths: same values."""
    from fs_platform.plugins.delta import aggregation_codes

    rng = np.random.default_rng(5)
    rows = [
        (int(k), BASE + timedelta(seconds=int(s)), float(a), True, "web")
        for k, s, a in zip(rng.integers(1, 6, 300), rng.integers(0, 86400, 300), rng.random(300), strict=True)
    ]
    entity = _requests(
        [
            (int(k), BASE + timedelta(seconds=int(s)))
            for k, s in zip(rng.integers(1, 7, 60), rng.integers(0, 86400, 60), strict=True)
        ],
        None,
    )
    table = _events(rows)
    fast = _run(spark, table, entity)
    monkeypatch.setattr(aggregation_codes, "_CODE_LIMIT", 1)
    slow = _run(spark, table, entity)
    _assert_equal(slow, fast)
    _assert_equal(slow, expected(SPEC, table.to_pandas(), entity))


def test_string_and_multi_column_keys(spark):
    """Keys of any type and several columns (dictionary-coded in the kernel); entity keys of another
    integer width are cast to the events' type."""
    other = Entity(name="terminal", join_keys=["terminal"], value_type=ValueType.STRING)
    src = FileSource(name="events2", path="/nonexistent/e.parquet", timestamp_field="event_timestamp")
    view = aggregation_view(
        name="agg2",
        entities=[customer, other],
        source=PushSource(name="p2", batch_source=src),
        aggregations=[Aggregation("amount", "sum", ["1h"]), Aggregation("*", "count", ["1h"])],
    )
    spec = spec_of(view)
    events = pa.table(
        {
            "customer_id": pa.array([1, 1, 2, 2, 1], pa.int64()),
            "terminal": pa.array(["a", "b", "a", "a", "a"]),
            "event_timestamp": pa.array(
                [BASE + timedelta(minutes=m) for m in (1, 2, 3, 4, 70)], pa.timestamp("us", tz="UTC")
            ),
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    requests = pd.DataFrame(
        {
            "label": range(4),
            "customer_id": pd.array([1, 1, 2, 3], dtype="int32"),
            "terminal": ["a", "b", "a", "a"],
            "event_timestamp": [BASE + timedelta(minutes=30)] * 4,
        }
    )
    entity = spark.createDataFrame(pa.Table.from_pandas(requests, preserve_index=False))
    frame = as_of(
        entity,
        "event_timestamp",
        ["customer_id", "terminal"],
        spec,
        spark.createDataFrame(events),
        {"amount_sum_1h": "s", "events_count_1h": "c"},
    )
    got = frame.toPandas().sort_values("label")
    assert got["s"].tolist() == [1.0, 2.0, 7.0, 0.0]
    assert got["c"].tolist() == [1, 1, 2, 0]


# -- tiles() ------------------------------------------------------------------------------------------


def _naive_tiles(spec, events: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """Per (key, tile size, tile): the stream path's slots, computed from the events one by one."""
    slots = layout(spec)
    kept = []
    for row in events.to_dict("records"):
        if row["customer_id"] is None or pd.isna(row["customer_id"]) or pd.isna(row["event_timestamp"]):
            continue
        us = (pd.Timestamp(row["event_timestamp"]) - pd.Timestamp(EPOCH)) // pd.Timedelta(microseconds=1)
        if not (start <= row["event_timestamp"] < end) or (
            spec.where is not None and evaluate(spec.where, row) is not True
        ):
            continue
        values = []
        for e in spec.inputs:
            v = evaluate(e, row)
            values.append(None if v is None or not math.isfinite(float(v)) else float(v))
        kept.append((int(row["customer_id"]), us, values))
    out = []
    for g in spec.granularities:
        groups: dict = {}
        for key, us, values in kept:
            groups.setdefault((key, us // g.tile_us), []).append((us, values))
        for (key, tile), members in groups.items():
            record = {"customer_id": key, "tag": g.tag, "tile": tile}
            for j, (kind, i) in enumerate(slots):
                xs = [(us, 1.0 if i < 0 else v[i]) for us, v in members if i < 0 or v[i] is not None]
                if kind == "h":  # the sketch's words, in order from its first slot
                    words = hll_words(hll_registers([x for _, x in xs]))
                    record[f"s{j}"] = words[j - slots.index((kind, i))]
                else:
                    record[f"s{j}"] = _slot(kind, xs)
            out.append(record)
    columns = ["customer_id", "tag", "tile", *[f"s{j}" for j in range(len(slots))]]
    return (
        pd.DataFrame(out, columns=columns).sort_values(["customer_id", "tag", "tile"]).reset_index(drop=True)
    )


def _slot(kind: str, xs: list[tuple[int, float]]) -> float:
    vals = [x for _, x in xs]
    mean = sum(vals) / len(vals) if vals else 0.0
    return {
        "n": lambda: float(len(xs)),
        "s": lambda: math.fsum(vals),
        "q": lambda: math.fsum((x - mean) ** 2 for x in vals),
        "m": lambda: min(vals, default=math.inf),
        "M": lambda: max(vals, default=-math.inf),
        "t": lambda: float(max((u for u, _ in xs), default=-math.inf)),
        "l": lambda: max(xs)[1] if xs else math.nan,
    }[kind]()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_rows, start=st.integers(-2 * 86400, 0), length=st.integers(0, 3 * 86400))
def test_tiles_match_a_naive_per_tile_computation(spark, events, start, length):
    table = _events([(k, None if o is None else BASE + o, x, a, c) for k, o, x, a, c in events])
    begin = BASE + timedelta(seconds=start)
    end = begin + timedelta(seconds=length)
    got = tiles(_event_frame(spark, table), SPEC, begin, end).toPandas()
    got = got.sort_values(["customer_id", "tag", "tile"]).reset_index(drop=True)
    want = _naive_tiles(SPEC, table.to_pandas(), begin, end)
    assert (
        got[["customer_id", "tag", "tile"]].values.tolist()
        == want[["customer_id", "tag", "tile"]].values.tolist()
    )
    for j, (kind, _) in enumerate(layout(SPEC)):
        g, w = got[f"s{j}"].to_numpy(), want[f"s{j}"].to_numpy(dtype=float)
        assert got[f"s{j}"].dtype == np.float64
        if kind in ("s", "q"):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9, err_msg=f"s{j} {kind}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"s{j} {kind}")


# -- through Feast: the example repo --------------------------------------------------------------------

END = datetime(2026, 11, 1, tzinfo=UTC)
AGGREGATION_VIEWS = (
    "customer_txn_aggregates",
    "merchant_txn_aggregates",
    "customer_amount_stats",
    "customer_merchant_spread",
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, engine):
    """A copy of feature_repo/ with generated data (Delta), applied to a file registry + SQLite."""
    path = tmp_path_factory.mktemp("aggrepo")
    shutil.copy(ROOT / "feature_repo" / "features.py", path / "features.py")
    data = datagen.generate(seed=11, customers=30, merchants=6, days=9, end=END, payments_per_customer_day=12)
    datagen.write_tables(data, path / "data")
    module_spec = importlib.util.spec_from_file_location("aggregation_test_features", path / "features.py")
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)
    store = FeatureStore(config=make_config(path, project="aggtest"))
    objects = [
        mod.customer,
        mod.merchant,
        mod.merchant_risk_daily,
        mod.customer_profile,
        mod.payments_push,
        mod.transaction_request,
        mod.txn_amount_vs_history,
        mod.fraud_model_v2,
        *[getattr(mod, name) for name in AGGREGATION_VIEWS],
    ]
    store.apply(objects)
    return store, data, path


def _entity_df(data, n: int, seed: int, zone: str = "Europe/Lisbon") -> pd.DataFrame:
    """Entity rows at payment times (ties with the event being scored), between payments, before
    the data starts; duplicates; in a non-UTC zone."""
    pay = data.payments.sample(n=n, random_state=seed)
    df = pay[["customer_id", "merchant_id", "event_timestamp", "amount"]].reset_index(drop=True)
    shifted = df.iloc[: n // 3].assign(event_timestamp=lambda d: d["event_timestamp"] + timedelta(minutes=17))
    early = df.iloc[:2].assign(event_timestamp=END - timedelta(days=40))
    df = pd.concat([df, shifted, early, df.iloc[:3]], ignore_index=True)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).dt.tz_convert(zone)
    return df


def _assert_view(
    result: pd.DataFrame, store, name: str, data, entity_df: pd.DataFrame, prefix: str = ""
) -> None:
    spec = spec_of(store.get_feature_view(name))
    keys = list(spec.join_keys)
    want = expected(spec, data.payments, entity_df[[*keys, "event_timestamp"]])
    got = result.rename(columns={f"{prefix}{f.name}": f.name for f in spec.features})
    _assert_equal(got, want, spec)


def test_feature_service_mixing_plain_aggregation_and_on_demand_views(repo):
    store, data, _ = repo
    entity_df = _entity_df(data, n=90, seed=1)
    job = store.get_historical_features(entity_df, features=store.get_feature_service("fraud_model_v2"))
    result = job.to_df()

    assert len(result) == len(entity_df)
    assert list(result.columns[:4]) == list(entity_df.columns)
    assert result["amount"].tolist() == entity_df["amount"].tolist()  # entity order kept
    assert result["txn_count_10m"].dtype == "int64" and result["txn_amount_1h"].dtype == "float64"
    for name in AGGREGATION_VIEWS:
        _assert_view(result, store, name, data, entity_df)
    risk = point_in_time(
        entity_df,
        "event_timestamp",
        data.merchant_risk_daily,
        ["merchant_id"],
        ["chargeback_rate_30d"],
        timedelta(days=2),
        ts_field="event_timestamp",
        created_field="created_at",
    )
    assert [None if pd.isna(v) else v for v in result["chargeback_rate_30d"]] == [
        None if pd.isna(v) else v for v in risk["chargeback_rate_30d"]
    ]
    avg = result["avg_amount_24h"].astype("float64")
    ratio = (result["amount"] / avg.where(avg > 0)).fillna(0.0)
    np.testing.assert_allclose(result["amount_to_avg_24h_ratio"], ratio)  # on-demand over the aggregation
    assert result["txn_count_10m"].gt(0).sum() >= 90  # rows at a payment count that payment
    assert set(job.source_versions) == {
        "merchant_risk_daily_source",
        "customer_profile_source",
        "payments_source",
    }


def test_full_feature_names_subsets_and_a_sql_entity_df(repo):
    store, data, path = repo
    entity_df = _entity_df(data, n=20, seed=2)[["customer_id", "merchant_id", "event_timestamp"]]
    write_table(
        path / "entities", entity_df.assign(event_timestamp=entity_df["event_timestamp"].dt.tz_convert("UTC"))
    )
    sql = f"SELECT customer_id, merchant_id, event_timestamp FROM delta.`{path / 'entities'}`"
    features = [
        "customer_amount_stats:last_amount_24h",
        "merchant_txn_aggregates:merchant_decline_rate_1h",
        "customer_profile:country",
    ]
    result = store.get_historical_features(sql, features=features, full_feature_names=True).to_df()
    assert list(result.columns) == [
        "customer_id",
        "merchant_id",
        "event_timestamp",
        "customer_amount_stats__last_amount_24h",
        "merchant_txn_aggregates__merchant_decline_rate_1h",
        "customer_profile__country",
    ]
    result = result.sort_values(["customer_id", "merchant_id", "event_timestamp"]).reset_index(drop=True)
    requests = result[["customer_id", "merchant_id", "event_timestamp"]]
    for view, feature in (
        ("customer_amount_stats", "last_amount_24h"),
        ("merchant_txn_aggregates", "merchant_decline_rate_1h"),
    ):
        spec = spec_of(store.get_feature_view(view))
        want = expected(spec, data.payments, requests)[feature].tolist()
        got = result[f"{view}__{feature}"].tolist()
        assert [None if pd.isna(v) else pytest.approx(v, rel=1e-9) for v in want] == [
            None if pd.isna(v) else v for v in got
        ]


def test_a_projection_renames_the_entity_key(repo):
    """``with_join_key_map``: the entity frame names the key differently from the events."""
    store, data, _ = repo
    view = store.get_feature_view("customer_txn_aggregates").with_join_key_map({"customer_id": "payer"})
    entity_df = _entity_df(data, n=15, seed=6)[["customer_id", "event_timestamp"]]
    job = DeltaOfflineStore.get_historical_features(
        store.config,
        [view],
        ["customer_txn_aggregates:txn_amount_1h"],
        entity_df.rename(columns={"customer_id": "payer"}),
        store.registry,
        "aggtest",
    )
    want = expected(spec_of(view), data.payments, entity_df)["txn_amount_1h"]
    np.testing.assert_allclose(job.to_df()["txn_amount_1h"], want, rtol=1e-9)


def test_date_range_mode_is_refused_for_aggregation_views(repo):
    store, _, _ = repo
    with pytest.raises(OfflineStoreError, match="customer_txn_aggregates.*entity_df=None"):
        store.get_historical_features(features=["customer_txn_aggregates:txn_count_1h"], end_date=END)


def test_a_missing_event_column_is_named(repo, tmp_path):
    store, data, _ = repo
    events = data.payments.drop(columns=["approved"])
    write_table(tmp_path / "payments", events)
    view = _view(
        DeltaSource(name="thin", path=str(tmp_path / "payments"), timestamp_field="event_timestamp"),
        where=None,
    )
    entity_df = pd.DataFrame({"customer_id": [1], "event_timestamp": [END]})
    with pytest.raises(SchemaMismatchError, match="agg.*'approved' is missing from the raw events"):
        DeltaOfflineStore.get_historical_features(
            store.config, [view], ["agg:n_10m"], entity_df, store.registry, "aggtest"
        )


def test_pulls_of_an_aggregation_view_point_to_fs_materialize(repo):
    """Feast's materialization would pull the view's features as columns of the raw events."""
    store, _, _ = repo
    view = store.get_feature_view("customer_txn_aggregates")
    with pytest.raises(SchemaMismatchError, match="no column 'txn_count_10m'.*fs materialize"):
        DeltaOfflineStore.pull_all_from_table_or_query(
            store.config,
            view.batch_source,
            ["customer_id"],
            [f.name for f in view.features],
            "event_timestamp",
        )


def test_versions_are_recorded_and_replayed(repo):
    """The raw events' Delta version is part of the job; appended events change the answer, a replay
    on the recorded versions does not."""
    store, data, path = repo
    entity_df = _entity_df(data, n=10, seed=4)[["customer_id", "event_timestamp"]]
    features = ["customer_txn_aggregates:txn_count_24h"]
    job = store.get_historical_features(entity_df, features=features)
    first = job.to_df()
    late = data.payments.iloc[:0].copy()
    late = pd.concat(
        [
            late,
            pd.DataFrame(
                {
                    "payment_id": [10**9 + i for i in range(len(entity_df))],
                    "customer_id": entity_df["customer_id"],
                    "merchant_id": 1,
                    "amount": 1.0,
                    "approved": True,
                    "chargeback": False,
                    "event_timestamp": pd.to_datetime(entity_df["event_timestamp"], utc=True)
                    - timedelta(seconds=1),
                }
            ),
        ],
        ignore_index=True,
    )
    write_table(path / "data" / "payments", late.astype(data.payments.dtypes.to_dict()), mode="append")
    now = store.get_historical_features(entity_df, features=features).to_df()
    assert (now["txn_count_24h"] > first["txn_count_24h"]).all()
    with pinned_versions(job.source_versions):
        again = store.get_historical_features(entity_df, features=features).to_df()
    pd.testing.assert_frame_equal(again, first)
