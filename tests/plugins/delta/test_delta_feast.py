"""The Delta store through Feast: the example repo's views, generated data, real Sail and Delta tables."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from feast import FeatureService, FeatureStore, FeatureView, Field, PushSource
from feast.data_source import PushMode
from feast.types import Float64, Int64, String

from fs_platform import datagen
from fs_platform.aggregation import spec_of
from fs_platform.errors import EntityDataFrameError, SchemaMismatchError, SourceNotFoundError
from fs_platform.plugins.delta import DeltaSource
from fs_platform.plugins.delta.offline_store import DeltaOfflineStore
from fs_platform.plugins.delta.storage import SavedDatasetDeltaStorage, recorded_source_versions
from fs_platform.plugins.delta.version_pins import pinned_versions
from tests.aggregation.reference import expected
from tests.plugins.delta.delta_helpers import make_config, write_table
from tests.plugins.delta.delta_reference import point_in_time

ROOT = Path(__file__).resolve().parents[3]
END = datetime(2026, 11, 1, tzinfo=UTC)
TXN = [
    "txn_count_10m",
    "txn_count_1h",
    "txn_count_24h",
    "txn_amount_10m",
    "txn_amount_1h",
    "txn_amount_24h",
    "avg_amount_24h",
]


def _load_features(repo: Path):
    spec = importlib.util.spec_from_file_location("delta_test_features", repo / "features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def repo(tmp_path_factory, engine):
    """A copy of feature_repo/ with generated data, applied to a file registry + SQLite online store."""
    path = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "feature_repo" / "features.py", path / "features.py")
    data = datagen.generate(seed=7, customers=40, merchants=8, days=3, end=END)
    datagen.write_tables(data, path / "data")
    mod = _load_features(path)
    service = FeatureService(
        name="fraud_test",
        features=[
            mod.merchant_risk_daily,
            mod.customer_profile[["country", "kyc_level"]],
            mod.customer_txn_aggregates,  # an aggregation view over the raw payments
            mod.txn_amount_vs_history,
        ],
    )
    snapshots = _hourly_snapshots(data.payments)
    write_table(path / "data" / "customer_txn_snapshot", snapshots)
    snapshot_push = PushSource(
        name="customer_txn_snapshot_push",
        batch_source=DeltaSource(
            name="customer_txn_snapshot_source",
            path="data/customer_txn_snapshot",
            timestamp_field="event_timestamp",
            created_timestamp_column="created_at",
        ),
    )
    snapshot_view = FeatureView(
        name="customer_txn_snapshot",
        entities=[mod.customer],
        ttl=timedelta(days=1),
        schema=[Field(name="txn_count_1h", dtype=Int64), Field(name="txn_amount_1h", dtype=Float64)],
        source=snapshot_push,
    )
    store = FeatureStore(config=make_config(path, project="payments"))
    store.apply(
        [
            mod.customer,
            mod.merchant,
            mod.merchant_risk_daily,
            mod.customer_profile,
            mod.payments_push,
            mod.customer_txn_aggregates,
            mod.transaction_request,
            mod.txn_amount_vs_history,
            snapshot_push,
            snapshot_view,
            service,
        ]
    )
    data.customer_txn_snapshot = snapshots  # the test-local plain table, next to the generated ones
    return store, data, path


def _hourly_snapshots(payments: pd.DataFrame) -> pd.DataFrame:
    """The test-local plain view's table (a pushed feature table, like the repo's stream views had before
    they became aggregation views): per customer and hour with payments, the hour's count and sum, stamped
    at the end of the hour and created a minute later."""
    hour = payments["event_timestamp"].dt.floor("h") + pd.Timedelta(hours=1)
    g = payments.assign(hour=hour).groupby(["customer_id", "hour"])
    out = g.agg(txn_count_1h=("payment_id", "size"), txn_amount_1h=("amount", "sum")).reset_index()
    out = out.rename(columns={"hour": "event_timestamp"}).astype({"txn_count_1h": "int64"})
    return out.assign(created_at=out["event_timestamp"] + pd.Timedelta(minutes=1))


def _entity_df(data, n=60, seed=1) -> pd.DataFrame:
    pay = data.payments.sample(n=n, random_state=seed)
    df = pay[["customer_id", "merchant_id", "event_timestamp", "amount"]].reset_index(drop=True)
    return pd.concat([df, df.iloc[:3]], ignore_index=True)  # duplicates must survive


def test_feature_service_with_on_demand_view_matches_reference(repo):
    store, data, _ = repo
    entity_df = _entity_df(data)
    job = store.get_historical_features(entity_df, features=store.get_feature_service("fraud_test"))
    result = job.to_df()

    assert len(result) == len(entity_df)
    assert list(result.columns[:4]) == list(entity_df.columns)
    assert result["customer_id"].tolist() == entity_df["customer_id"].tolist()
    assert {"chargeback_rate_30d", "country", "kyc_level", "amount_to_avg_24h_ratio"} <= set(result.columns)
    assert str(result["event_timestamp"].dt.tz) == "UTC"

    # The aggregation view against the naive reference (counts exact, float sums rel 1e-9).
    spec = spec_of(store.get_feature_view("customer_txn_aggregates"))
    want = expected(spec, data.payments, entity_df[["customer_id", "event_timestamp"]])
    for column in TXN:
        _assert_values(result[column], want[column], exact=column.startswith("txn_count"), name=column)
    assert all(pd.api.types.is_integer_dtype(result[c]) for c in TXN if c.startswith("txn_count"))
    # The plain views against the point-in-time reference.
    risk_view, profile_view = (
        store.get_feature_view("merchant_risk_daily"),
        store.get_feature_view("customer_profile"),
    )
    risk_columns = [f.name for f in risk_view.features]
    risk = point_in_time(
        entity_df,
        "event_timestamp",
        data.merchant_risk_daily,
        ["merchant_id"],
        risk_columns,
        risk_view.ttl,
        ts_field="event_timestamp",
        created_field="created_at",
    )
    profile = point_in_time(
        entity_df,
        "event_timestamp",
        data.customer_profile,
        ["customer_id"],
        ["country", "kyc_level"],
        profile_view.ttl,
        ts_field="event_timestamp",
        created_field="created_at",
    )
    assert not risk["chargeback_rate_30d"].isna().all() and not profile["country"].isna().all()
    for column in risk_columns:
        _assert_values(result[column], risk[column], exact=True, name=column)
    for column in ["country", "kyc_level"]:
        _assert_values(result[column], profile[column], exact=True, name=column)
    # The on-demand view over the aggregation view and the request's amount.
    avg = want["avg_amount_24h"].astype("float64")
    _assert_values(
        result["amount_to_avg_24h_ratio"],
        (entity_df["amount"] / avg.where(avg > 0)).fillna(0.0),
        exact=False,
        name="amount_to_avg_24h_ratio",
    )
    above = (entity_df["amount"] > avg.fillna(float("inf"))).tolist()
    assert result["amount_above_avg_24h"].tolist() == above
    assert set(job.source_versions) == {
        "merchant_risk_daily_source",
        "customer_profile_source",
        "payments_source",
    }
    assert job.metadata.min_event_timestamp == entity_df["event_timestamp"].min()


def _assert_values(got: pd.Series, want: pd.Series, *, exact: bool, name: str) -> None:
    """Row by row: nulls where the reference has none, the same values (floats rel 1e-9 unless exact)."""
    got_values = [None if pd.isna(v) else v for v in got]
    want_values = [None if pd.isna(v) else v for v in want]
    assert [v is None for v in got_values] == [v is None for v in want_values], name
    pairs = [(g, w) for g, w in zip(got_values, want_values, strict=True) if w is not None]
    if exact:
        assert [g for g, _ in pairs] == [w for _, w in pairs], name
    else:
        assert [float(g) for g, _ in pairs] == pytest.approx([float(w) for _, w in pairs], rel=1e-9), name


def _rows(df: pd.DataFrame) -> list[tuple]:
    """The rows as tuples (nulls as None, times in UTC), ordered by their first two columns."""
    rows = [
        tuple(
            None if pd.isna(v) else pd.Timestamp(v).tz_convert("UTC") if isinstance(v, pd.Timestamp) else v
            for v in row
        )
        for row in df.astype(object).itertuples(index=False)
    ]
    return sorted(rows, key=lambda r: (r[0], r[1]))


def test_sql_entity_df_and_full_feature_names(repo):
    store, data, path = repo
    entity_df = _entity_df(data, n=20)[["customer_id", "event_timestamp"]]
    write_table(path / "entities", entity_df)
    sql = f"SELECT customer_id, event_timestamp FROM delta.`{path / 'entities'}`"
    result = store.get_historical_features(
        sql,
        features=["customer_txn_aggregates:txn_count_1h", "customer_profile:country"],
        full_feature_names=True,
    ).to_df()
    assert list(result.columns) == [
        "customer_id",
        "event_timestamp",
        "customer_txn_aggregates__txn_count_1h",
        "customer_profile__country",
    ]
    assert len(result) == 23

    # Same values as the references, whatever the row order of a SQL entity_df.
    spec = spec_of(store.get_feature_view("customer_txn_aggregates"))
    profile = point_in_time(
        entity_df,
        "event_timestamp",
        data.customer_profile,
        ["customer_id"],
        ["country"],
        store.get_feature_view("customer_profile").ttl,
        ts_field="event_timestamp",
        created_field="created_at",
    )
    want = entity_df.assign(
        count=expected(spec, data.payments, entity_df)["txn_count_1h"].to_numpy(),
        country=profile["country"].to_numpy(),
    )
    got = result.set_axis(["customer_id", "event_timestamp", "count", "country"], axis=1)
    assert _rows(got) == _rows(want)


def test_date_range_mode_returns_latest_per_entity(repo):
    store, data, _ = repo
    profile = data.customer_profile
    end = profile["event_timestamp"].max()
    result = store.get_historical_features(
        features=["customer_profile:kyc_level"], end_date=end.to_pydatetime()
    ).to_df()
    window = profile[profile["event_timestamp"] >= end - timedelta(days=365)]  # the view's ttl
    assert sorted(result["customer_id"]) == sorted(window["customer_id"].unique())
    assert (result["event_timestamp"] == end).all()
    latest = window.sort_values(["event_timestamp", "created_at"]).groupby("customer_id").tail(1)
    assert dict(zip(result["customer_id"], result["kyc_level"], strict=True)) == dict(
        zip(latest["customer_id"], latest["kyc_level"], strict=True)
    )


def test_date_range_mode_drops_entities_outside_the_ttl(repo):
    """A plain view with a 1-day ttl (the test-local snapshots): customers without a row in the last day
    are not returned, the others come back with their latest row, stamped at end_date."""
    store, data, _ = repo
    snaps = data.customer_txn_snapshot
    end = snaps["event_timestamp"].max()
    result = store.get_historical_features(
        features=["customer_txn_snapshot:txn_count_1h"], end_date=end.to_pydatetime()
    ).to_df()
    window = snaps[snaps["event_timestamp"] >= end - timedelta(days=1)]
    assert window["customer_id"].nunique() < snaps["customer_id"].nunique()  # the ttl does exclude someone
    assert sorted(result["customer_id"]) == sorted(window["customer_id"].unique())
    assert (result["event_timestamp"] == end).all()
    latest = window.sort_values("event_timestamp").groupby("customer_id").tail(1)
    assert dict(zip(result["customer_id"], result["txn_count_1h"], strict=True)) == dict(
        zip(latest["customer_id"], latest["txn_count_1h"], strict=True)
    )


def test_materialize_to_online_store(repo):
    """Default local engine pulls through pull_all; the newest row per customer lands online."""
    store, data, _ = repo
    profile = data.customer_profile  # ttl 365d: still servable now (online TTL is relative to now)
    store.materialize(END - timedelta(days=30), END + timedelta(seconds=1), ["customer_profile"])
    latest = profile.sort_values(["event_timestamp", "created_at"]).groupby("customer_id").tail(1)
    rows = latest.head(5)
    online = store.get_online_features(
        features=["customer_profile:country"], entity_rows=[{"customer_id": int(c)} for c in rows.customer_id]
    ).to_dict()
    assert online["country"] == rows["country"].tolist()


def test_push_to_offline_then_retrieve(repo):
    """A row pushed to a plain view's push source is retrieved as pushed (the test-local snapshot view)."""
    store, _, _ = repo
    ts = END + timedelta(days=30)
    pushed = pd.DataFrame(
        {
            "customer_id": [999_001],
            "txn_count_1h": [7],
            "txn_amount_1h": [1.5],
            "event_timestamp": [ts],
            "created_at": [ts],
        }
    )
    store.push("customer_txn_snapshot_push", pushed, to=PushMode.OFFLINE)
    entity_df = pd.DataFrame({"customer_id": [999_001], "event_timestamp": [ts + timedelta(minutes=1)]})
    result = store.get_historical_features(
        entity_df, features=["customer_txn_snapshot:txn_count_1h", "customer_txn_snapshot:txn_amount_1h"]
    ).to_df()
    assert result["txn_count_1h"].tolist() == [7]
    assert result["txn_amount_1h"].tolist() == [1.5]


def test_a_raw_payment_pushed_offline_counts_in_the_aggregation_view(repo):
    """payments_push feeds the aggregation view: a pushed payment counts in the windows from its time on."""
    store, data, _ = repo
    ts = END + timedelta(days=30)
    pushed = data.payments.iloc[:2].assign(
        payment_id=[10**9, 10**9 + 1], customer_id=999_002, event_timestamp=[ts, ts + timedelta(minutes=2)]
    )
    store.push("payments_push", pushed, to=PushMode.OFFLINE)
    entity_df = pd.DataFrame(
        {
            "customer_id": [999_002] * 3,
            "event_timestamp": [
                ts - timedelta(seconds=1),
                ts + timedelta(minutes=1),
                ts + timedelta(minutes=2),
            ],
        }
    )
    result = store.get_historical_features(
        entity_df, features=["customer_txn_aggregates:txn_count_1h", "customer_txn_aggregates:txn_amount_1h"]
    ).to_df()
    assert result["txn_count_1h"].tolist() == [0, 1, 2]  # a payment counts from its own time on
    amounts = pushed["amount"].tolist()
    assert result["txn_amount_1h"].tolist() == pytest.approx(
        [0.0, amounts[0], amounts[0] + amounts[1]], rel=1e-9
    )


def test_saved_dataset_replays_identically_after_append(repo, tmp_path):
    store, data, path = repo
    entity_df = _entity_df(data, n=40, seed=3)
    features = [
        "customer_txn_aggregates:txn_count_24h",
        "customer_txn_snapshot:txn_count_1h",
        "customer_profile:country",
    ]
    job = store.get_historical_features(entity_df, features=features)
    storage = SavedDatasetDeltaStorage(path=str(tmp_path / "training_set"))
    dataset = store.create_saved_dataset(from_=job, name="fraud_training_v1", storage=storage)
    saved = dataset.to_df()
    first = job.to_df()
    assert len(saved) == len(first)

    tables = {name: path / "data" / name for name in ("payments", "customer_txn_snapshot")}
    before = {name: DeltaTable(str(table)).to_pandas() for name, table in tables.items()}
    try:
        # A late payment just before every entity row changes the aggregation view's answer ...
        late = data.payments.iloc[: len(entity_df)].assign(
            payment_id=range(10**9, 10**9 + len(entity_df)),
            customer_id=entity_df["customer_id"].to_numpy(),
            event_timestamp=(
                pd.to_datetime(entity_df["event_timestamp"], utc=True) - timedelta(seconds=1)
            ).to_numpy(),
        )
        write_table(tables["payments"], late, mode="append")
        # ... and a late correction (a newer created_at at the same event time) the plain view's.
        fixed = data.customer_txn_snapshot.assign(
            created_at=data.customer_txn_snapshot["created_at"] + timedelta(hours=1),
            txn_count_1h=data.customer_txn_snapshot["txn_count_1h"] + 1000,
        )
        write_table(tables["customer_txn_snapshot"], fixed, mode="append")
        now = store.get_historical_features(entity_df, features=features).to_df()
        assert (now["txn_count_24h"] > first["txn_count_24h"]).all()  # each row sees its own late payment
        assert now["txn_count_1h"].notna().any()
        assert (now["txn_count_1h"].dropna() >= 1000).all()

        with pinned_versions(recorded_source_versions(storage, store.config)):
            again = store.get_historical_features(entity_df, features=features).to_df()
        pd.testing.assert_frame_equal(again, first)
    finally:  # the other tests of the module read these tables
        for name, table in tables.items():
            write_table(table, before[name])


def test_pull_latest_dedups_per_key(repo):
    store, data, _ = repo
    view = store.get_feature_view("customer_profile")
    start, end = END - timedelta(days=30), END
    rows = _pull_latest_profile(store, view, start, end).to_df()
    assert rows["customer_id"].is_unique
    profile = data.customer_profile
    in_range = profile[(profile["event_timestamp"] >= start) & (profile["event_timestamp"] <= end)]
    assert set(rows["customer_id"]) == set(in_range["customer_id"])


def test_pull_latest_over_an_empty_window_returns_an_empty_table(repo):
    """Sail writes no output folder for zero rows; the job still returns the view's columns."""
    store, _, _ = repo
    view = store.get_feature_view("customer_profile")
    start = END + timedelta(days=365)
    job = _pull_latest_profile(store, view, start, start + timedelta(days=1))
    table = job.to_arrow()
    assert table.num_rows == 0
    assert set(table.column_names) >= {"customer_id", "country", "kyc_level", "event_timestamp"}
    assert pa.types.is_timestamp(table.schema.field("event_timestamp").type)
    assert job.to_df().empty


def test_missing_table_names_the_path(repo, tmp_path):
    store, _, _ = repo
    view = store.get_feature_view("customer_profile")
    view.batch_source = DeltaSource(
        name="gone", path=str(tmp_path / "nope"), timestamp_field="event_timestamp"
    )
    entity_df = pd.DataFrame({"customer_id": [1], "event_timestamp": [END]})
    with pytest.raises(SourceNotFoundError, match="nope"):
        DeltaOfflineStore.get_historical_features(
            store.config, [view], ["customer_profile:country"], entity_df, store.registry, "payments"
        )


def test_missing_join_key_is_named(repo):
    store, _, _ = repo
    entity_df = pd.DataFrame({"merchant_id": [1], "event_timestamp": [END]})
    with pytest.raises(EntityDataFrameError, match="'customer_id'.*customer_profile"):
        store.get_historical_features(entity_df, features=["customer_profile:country"])


def test_missing_timestamp_column_is_named(repo):
    store, _, _ = repo
    with pytest.raises(EntityDataFrameError, match="event_timestamp"):
        store.get_historical_features(
            pd.DataFrame({"customer_id": [1]}), features=["customer_profile:country"]
        )


def test_view_type_not_matching_delta_is_named(repo):
    store, _, _ = repo
    view = store.get_feature_view("merchant_risk_daily")
    wrong = FeatureView(
        name="merchant_risk_daily",
        entities=[store.get_entity("merchant")],
        ttl=view.ttl,
        schema=[*view.entity_columns, Field(name="chargeback_rate_30d", dtype=String)],
        source=view.batch_source,
    )
    entity_df = pd.DataFrame({"merchant_id": [1], "event_timestamp": [END]})
    with pytest.raises(SchemaMismatchError, match="'chargeback_rate_30d' is String in the view but double"):
        DeltaOfflineStore.get_historical_features(
            store.config,
            [wrong],
            ["merchant_risk_daily:chargeback_rate_30d"],
            entity_df,
            store.registry,
            "payments",
        )


def test_offline_write_with_a_wrong_type_writes_nothing(repo):
    store, data, _ = repo
    view = store.get_feature_view("merchant_risk_daily")
    before = DeltaOfflineStore.pull_all_from_table_or_query(
        store.config, view.batch_source, ["merchant_id"], ["txn_volume_1d"], "event_timestamp"
    ).to_arrow()
    bad = datagen.to_arrow(data.merchant_risk_daily.iloc[:1])
    bad = bad.set_column(
        bad.schema.get_field_index("txn_volume_1d"), "txn_volume_1d", pa.array(["not a number"])
    )
    with pytest.raises(SchemaMismatchError, match="'txn_volume_1d' is string, Delta has int64"):
        DeltaOfflineStore.offline_write_batch(store.config, view, bad, None)
    after = DeltaOfflineStore.pull_all_from_table_or_query(
        store.config, view.batch_source, ["merchant_id"], ["txn_volume_1d"], "event_timestamp"
    ).to_arrow()
    assert after.num_rows == before.num_rows


def _pull_latest_profile(store, view, start, end):
    """``pull_latest_from_table_or_query`` of two customer_profile features over ``[start, end]``."""
    return DeltaOfflineStore.pull_latest_from_table_or_query(
        store.config,
        view.batch_source,
        ["customer_id"],
        ["country", "kyc_level"],
        "event_timestamp",
        "created_at",
        start,
        end,
    )


def test_a_bad_sql_entity_df_is_one_clear_error(repo):
    store, _, _ = repo
    with pytest.raises(EntityDataFrameError, match="entity_df query cannot be analysed.*no_such_table"):
        store.get_historical_features(
            "SELECT customer_id, event_timestamp FROM no_such_table", features=["customer_profile:country"]
        )


def test_nanosecond_entity_timestamps_are_truncated_to_microseconds(repo):
    """Feast's own stores accept nanosecond entity times; Spark only has microseconds. An entity row 789 ns
    after a payment (aggregation view) or a snapshot row (plain view) still sees it."""
    store, data, _ = repo
    rows = pd.concat(
        [data.payments.sample(n=5, random_state=1), data.customer_txn_snapshot.sample(n=5, random_state=1)]
    )
    entity_df = rows[["customer_id", "event_timestamp"]].reset_index(drop=True)
    nanos = entity_df.assign(event_timestamp=entity_df["event_timestamp"] + pd.Timedelta(nanoseconds=789))
    features = ["customer_txn_aggregates:txn_count_1h", "customer_txn_snapshot:txn_count_1h"]
    got = store.get_historical_features(nanos, features=features, full_feature_names=True).to_df()
    want = store.get_historical_features(entity_df, features=features, full_feature_names=True).to_df()
    aggregated, plain = "customer_txn_aggregates__txn_count_1h", "customer_txn_snapshot__txn_count_1h"
    assert got[aggregated].tolist() == want[aggregated].tolist()
    assert got[plain].tolist() == want[plain].tolist()
    spec = spec_of(store.get_feature_view("customer_txn_aggregates"))
    assert got[aggregated].tolist() == expected(spec, data.payments, entity_df)["txn_count_1h"].tolist()
    assert got[plain].iloc[5:].tolist() == rows["txn_count_1h"].iloc[5:].tolist()  # the row at that time


def test_a_spark_frame_from_a_dropped_job_still_evaluates(repo):
    """to_spark_df() reads the staged entity file when evaluated: it must outlive the job object."""
    import gc

    store, data, _ = repo
    entity_df = _entity_df(data, n=20)[["customer_id", "event_timestamp"]]
    frame = store.get_historical_features(
        entity_df, features=["customer_txn_aggregates:txn_count_1h"]
    ).to_spark_df()
    gc.collect()  # the job is gone
    assert frame.count() == len(entity_df)


def test_an_entity_key_of_the_wrong_type_is_one_clear_error_without_the_key(repo):
    from fs_platform.errors import EntityKeyTypeError

    store, _, _ = repo
    entity_df = pd.DataFrame({"customer_id": ["jane.doe@example.com"], "event_timestamp": [END]})
    with pytest.raises(
        EntityKeyTypeError, match="1 value.s. of join key 'customer_id' are not exactly INT64"
    ) as err:
        store.get_historical_features(entity_df, features=["customer_profile:country"]).to_df()
    assert "jane.doe" not in str(err.value)
