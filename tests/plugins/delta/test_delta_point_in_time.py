"""Point-in-time correctness of DeltaOfflineStore against the naive pandas reference (real Sail + Delta)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from feast import Entity, FeatureView, Field
from feast.types import Bool, Float64, Int64, String
from feast.value_type import ValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fs_platform.plugins.delta import DeltaSource, pit_join
from fs_platform.plugins.delta.offline_store import DeltaOfflineStore
from tests.plugins.delta.delta_helpers import write_table
from tests.plugins.delta.delta_reference import point_in_time

BASE = datetime(2024, 3, 1, tzinfo=UTC)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64)
terminal = Entity(name="terminal", join_keys=["terminal"], value_type=ValueType.STRING)


def views(ttl_a: timedelta | None, ttl_b: timedelta | None) -> tuple[FeatureView, FeatureView]:
    a = FeatureView(
        name="a",
        entities=[customer],
        ttl=ttl_a,
        schema=[
            Field(name="customer_id", dtype=Int64),
            Field(name="a_int", dtype=Int64),
            Field(name="a_float", dtype=Float64),
        ],
        source=DeltaSource(name="a_src", path="a", timestamp_field="ts", created_timestamp_column="created"),
    )
    b = FeatureView(
        name="b",
        entities=[merchant, terminal],  # multi-column join key
        ttl=ttl_b,
        schema=[
            Field(name="merchant_id", dtype=Int64),
            Field(name="terminal", dtype=String),
            Field(name="b_str", dtype=String),
            Field(name="b_bool", dtype=Bool),
        ],
        source=DeltaSource(
            name="b_src",
            path="b",
            timestamp_field="event_ts",
            created_timestamp_column="created_at",
            field_mapping={"b_string": "b_str"},  # source column b_string serves feature b_str
        ),
    )
    return a, b


def minutes(m: int | None) -> pd.Timestamp | None:
    return None if m is None else pd.Timestamp(BASE + timedelta(minutes=m))


opt_minute = st.one_of(st.none(), st.integers(0, 12))
a_rows = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 12), opt_minute, st.one_of(st.none(), st.integers(-5, 5))),
    max_size=25,
)
b_rows = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"]), st.integers(0, 12), opt_minute, st.booleans()),
    max_size=20,
)
entity_rows = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 3), st.sampled_from(["x", "y"]), st.integers(0, 15)),
    min_size=1,
    max_size=15,
)
ttls = st.sampled_from([None, timedelta(0), timedelta(minutes=3), timedelta(minutes=7)])
zones = st.sampled_from([None, "UTC", "America/Sao_Paulo", "Asia/Kolkata"])


def frames(a, b):
    fa = pd.DataFrame(
        [
            {
                "customer_id": k,
                "ts": minutes(t),
                "created": minutes(c),
                "a_int": v,
                "a_float": None if v is None else v / 2,
            }
            for k, t, c, v in a
        ],
        columns=["customer_id", "ts", "created", "a_int", "a_float"],
    ).astype({"customer_id": "int64", "a_int": "Int64", "a_float": "float64"})
    fb = pd.DataFrame(
        [
            {
                "merchant_id": m,
                "terminal": term,
                "event_ts": minutes(t),
                "created_at": minutes(c),
                "b_string": f"s{t}",
                "b_bool": flag,
            }
            for m, term, t, c, flag in b
        ],
        columns=["merchant_id", "terminal", "event_ts", "created_at", "b_string", "b_bool"],
    ).astype({"merchant_id": "int64", "terminal": "string", "b_string": "string", "b_bool": "bool"})
    # Exact duplicates of (key, event ts, created ts) have no defined winner in any store: drop them.
    fa = fa.drop_duplicates(["customer_id", "ts", "created"])
    fb = fb.drop_duplicates(["merchant_id", "terminal", "event_ts", "created_at"])
    for df, ts in ((fa, ["ts", "created"]), (fb, ["event_ts", "created_at"])):
        for c in ts:
            df[c] = pd.to_datetime(df[c], utc=True)
    return fa, fb


def entities(rows, zone) -> pd.DataFrame:
    ts = pd.to_datetime([BASE + timedelta(minutes=m) for _, _, _, m in rows], utc=True)
    ts = ts.tz_convert(zone) if zone else ts.tz_localize(None)  # naive = UTC wall time
    return pd.DataFrame(
        {
            "label": range(len(rows)),
            "customer_id": [c for c, _, _, _ in rows],
            "event_timestamp": ts,
            "merchant_id": [m for _, m, _, _ in rows],
            "terminal": [t for _, _, t, _ in rows],
        }
    )


def assert_matches(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    for column in expected.columns:
        got = [None if pd.isna(v) else v for v in result[column]]
        want = [None if pd.isna(v) else v for v in expected[column]]
        assert got == want, column


def check_against_reference(config, registry, a, b, ents, ttl_a, ttl_b, zone, by_created) -> None:
    fa, fb = frames(a, b)
    write_table(config.repo_path / "a", fa)
    write_table(config.repo_path / "b", fb)
    va, vb = views(ttl_a, ttl_b)
    entity_df = entities(ents, zone)
    refs = ["a:a_int", "a:a_float", "b:b_str", "b:b_bool"]
    job = DeltaOfflineStore.get_historical_features(
        config, [va, vb], refs, entity_df, registry, config.project, filter_by_created_timestamp=by_created
    )
    result = job.to_df()

    # every entity row and column survives, in order, timestamps as UTC instants
    assert list(result.columns) == [*entity_df.columns, "a_int", "a_float", "b_str", "b_bool"]
    assert result["label"].tolist() == entity_df["label"].tolist()
    assert str(result["event_timestamp"].dt.tz) == "UTC"
    assert (result["event_timestamp"] == pd.to_datetime(entity_df["event_timestamp"], utc=True)).all()
    assert result["a_int"].dtype.name in ("int64", "Int64")

    exp_a = point_in_time(
        entity_df, "event_timestamp", fa, ["customer_id"], ["a_int", "a_float"], ttl_a, by_created
    )
    exp_b = point_in_time(
        entity_df,
        "event_timestamp",
        fb.rename(columns={"b_string": "b_str"}),
        ["merchant_id", "terminal"],
        ["b_str", "b_bool"],
        ttl_b,
        by_created,
        ts_field="event_ts",
        created_field="created_at",
    )
    assert_matches(result, pd.concat([exp_a, exp_b], axis=1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=a_rows, b=b_rows, ents=entity_rows, ttl_a=ttls, ttl_b=ttls, zone=zones, by_created=st.booleans())
def test_matches_reference(config, registry, a, b, ents, ttl_a, ttl_b, zone, by_created):
    check_against_reference(config, registry, a, b, ents, ttl_a, ttl_b, zone, by_created)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=a_rows, b=b_rows, ents=entity_rows, ttl_a=ttls, ttl_b=ttls)
def test_matches_reference_with_all_keys_in_one_window_partition(
    config, registry, monkeypatch, a, b, ents, ttl_a, ttl_b
):
    """The interval window groups many keys per partition; here all of them, so every key boundary
    (including one where only the second column of a two-column key changes) is inside a partition."""
    monkeypatch.setattr(pit_join, "_WINDOW_PARTITIONS", 1)
    check_against_reference(config, registry, a, b, ents, ttl_a, ttl_b, None, False)


@pytest.mark.parametrize("created, by_created", [(pd.NaT, False), (BASE, False), (BASE, True)])
def test_exact_ties_have_one_winner_whatever_the_row_order(config, registry, created, by_created):
    """Rows equal in key, event ts and created ts: the same single winner for any input order (both
    formulations: validity intervals, and candidates ranked under filter_by_created_timestamp)."""
    t = BASE + timedelta(hours=1)
    rows = pd.DataFrame(
        {
            "customer_id": [1] * 6,
            "ts": [t] * 6,
            "created": [created] * 6,
            "a_int": [10, 11, 12, 13, 14, 15],
            "a_float": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
        }
    )
    va, _ = views(timedelta(hours=2), None)
    entity_df = pd.DataFrame({"customer_id": [1, 1], "event_timestamp": [t, t + timedelta(minutes=5)]})
    picks = []
    for order in (rows, rows.iloc[::-1], rows.iloc[[3, 0, 5, 1, 4, 2]]):
        write_table(config.repo_path / "a", order.reset_index(drop=True))
        job = DeltaOfflineStore.get_historical_features(
            config,
            [va],
            ["a:a_int", "a:a_float"],
            entity_df,
            registry,
            config.project,
            filter_by_created_timestamp=by_created,
        )
        result = job.to_df()
        picks.append(result[["a_int", "a_float"]].values.tolist())
    assert picks[0] == picks[1] == picks[2]
    a_int, a_float = picks[0][0]
    assert (a_int, a_float) in set(zip(rows["a_int"], rows["a_float"], strict=True))  # one real row
    assert picks[0][1] == picks[0][0]
    if by_created:  # both formulations pick the same row
        job = DeltaOfflineStore.get_historical_features(
            config, [va], ["a:a_int", "a:a_float"], entity_df, registry, config.project
        )
        assert job.to_df()[["a_int", "a_float"]].values.tolist() == picks[0]
    # Requesting one feature picks the same row, and so does pull_latest (what materialization writes),
    # whatever the order the rows were written in.
    one = DeltaOfflineStore.get_historical_features(
        config, [va], ["a:a_int"], entity_df, registry, config.project
    )
    assert one.to_df()["a_int"].tolist() == [a_int, a_int]
    for order in (rows, rows.iloc[::-1], rows.iloc[[3, 0, 5, 1, 4, 2]], rows.iloc[[a_int - 10]]):
        write_table(config.repo_path / "a", pd.concat([order, rows]).drop_duplicates().reset_index(drop=True))
        latest = DeltaOfflineStore.pull_latest_from_table_or_query(
            config,
            va.batch_source,
            ["customer_id"],
            ["a_int", "a_float"],
            "ts",
            "created",
            BASE,
            BASE + timedelta(days=1),
        ).to_df()
        assert latest[["a_int", "a_float"]].values.tolist() == [[a_int, a_float]]


def test_time_buckets_before_the_epoch(config, registry):
    """TTL buckets are computed from epoch microseconds: negative values must bucket the same way."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    ttl = timedelta(hours=1)
    stamps = [epoch + timedelta(minutes=m) for m in (-130, -75, -61, -59, -1, 0, 1, 59, 61)]
    fa = pd.DataFrame(
        {
            "customer_id": [1] * len(stamps),
            "ts": stamps,
            "created": [pd.NaT] * len(stamps),
            "a_int": list(range(len(stamps))),
            "a_float": [0.0] * len(stamps),
        }
    )
    write_table(config.repo_path / "a", fa)
    va, _ = views(ttl, None)
    probes = [epoch + timedelta(minutes=m) for m in range(-140, 130, 7)] + stamps
    entity_df = pd.DataFrame({"customer_id": [1] * len(probes), "event_timestamp": probes})
    result = DeltaOfflineStore.get_historical_features(
        config, [va], ["a:a_int"], entity_df, registry, config.project
    ).to_df()
    expected = point_in_time(entity_df, "event_timestamp", fa, ["customer_id"], ["a_int"], ttl)
    assert_matches(result, expected)


@pytest.mark.parametrize(
    "ttl, shift",
    [
        (timedelta(hours=1), timedelta(microseconds=-1)),  # the last microsecond of a TTL-wide bucket
        (timedelta(hours=1), timedelta(0)),  # its first
        (timedelta(hours=1), timedelta(microseconds=1)),
        (timedelta(milliseconds=1500), timedelta(microseconds=-1)),  # a sub-second part is kept exactly
        (timedelta(milliseconds=1500), timedelta(milliseconds=700)),
    ],
)
def test_rows_at_time_bucket_edges_serve_their_whole_ttl(config, registry, ttl, shift):
    """Feature rows right at a TTL-wide time bucket edge, probed across the next two TTLs."""
    start = datetime(2024, 3, 1, 5, tzinfo=UTC)  # a multiple of both TTLs since the epoch
    stamps = [start + ttl + shift, start + 3 * ttl + shift]
    fa = pd.DataFrame(
        {
            "customer_id": [1, 1],
            "ts": stamps,
            "created": [pd.NaT, pd.NaT],
            "a_int": [1, 2],
            "a_float": [0.5, 1.5],
        }
    )
    write_table(config.repo_path / "a", fa)
    va, _ = views(ttl, None)
    step = ttl / 8
    probes = [stamps[0] + k * step for k in range(-2, 26)]
    probes += [
        t + d for t in stamps for d in (ttl - timedelta(microseconds=1), ttl, ttl + timedelta(microseconds=1))
    ]
    entity_df = pd.DataFrame({"customer_id": [1] * len(probes), "event_timestamp": probes})
    result = DeltaOfflineStore.get_historical_features(
        config, [va], ["a:a_int"], entity_df, registry, config.project
    ).to_df()
    expected = point_in_time(entity_df, "event_timestamp", fa, ["customer_id"], ["a_int"], ttl)
    assert expected["a_int"].notna().sum() > len(probes) // 2  # the probes do land inside the TTLs
    assert_matches(result, expected)


@pytest.mark.parametrize("offset, found", [(timedelta(0), True), (timedelta(microseconds=1), False)])
def test_ttl_lower_bound_is_inclusive(config, registry, offset, found):
    """Feast's file store keeps feature_ts == entity_ts - ttl and drops anything older."""
    ttl = timedelta(hours=1)
    entity_ts = BASE + timedelta(hours=5)
    fa = pd.DataFrame(
        {
            "customer_id": [1],
            "ts": [entity_ts - ttl - offset],
            "created": [pd.NaT],
            "a_int": [7],
            "a_float": [1.0],
        }
    )
    write_table(config.repo_path / "a", fa)
    va, _ = views(ttl, None)
    entity_df = pd.DataFrame({"customer_id": [1], "event_timestamp": [entity_ts]})
    job = DeltaOfflineStore.get_historical_features(
        config, [va], ["a:a_int"], entity_df, registry, config.project
    )
    value = job.to_df()["a_int"].iloc[0]
    assert (value == 7) if found else pd.isna(value)


@pytest.mark.parametrize("offset, found", [(timedelta(0), True), (timedelta(microseconds=1), False)])
def test_upper_bound_is_the_entity_timestamp(config, registry, offset, found):
    entity_ts = BASE + timedelta(hours=5)
    fa = pd.DataFrame(
        {"customer_id": [1], "ts": [entity_ts + offset], "created": [pd.NaT], "a_int": [7], "a_float": [1.0]}
    )
    write_table(config.repo_path / "a", fa)
    va, _ = views(timedelta(hours=1), None)
    entity_df = pd.DataFrame({"customer_id": [1], "event_timestamp": [entity_ts]})
    job = DeltaOfflineStore.get_historical_features(
        config, [va], ["a:a_int"], entity_df, registry, config.project
    )
    value = job.to_df()["a_int"].iloc[0]
    assert (value == 7) if found else pd.isna(value)


def test_late_arriving_row_wins_only_with_a_later_created_timestamp(config, registry):
    """A correction written later for the same event time replaces the value (created tie-break)."""
    t = BASE + timedelta(hours=1)
    fa = pd.DataFrame(
        {
            "customer_id": [1, 1, 1],
            "ts": [t, t, t - timedelta(minutes=1)],
            "created": [t, t + timedelta(days=1), t + timedelta(days=2)],
            "a_int": [1, 2, 3],
            "a_float": [0.0, 0.0, 0.0],
        }
    )
    write_table(config.repo_path / "a", fa)
    va, _ = views(None, None)
    entity_df = pd.DataFrame({"customer_id": [1, 1], "event_timestamp": [t, t + timedelta(days=1, hours=1)]})
    latest = DeltaOfflineStore.get_historical_features(
        config, [va], ["a:a_int"], entity_df, registry, config.project
    )
    assert latest.to_df()["a_int"].tolist() == [2, 2]
    as_known = DeltaOfflineStore.get_historical_features(
        config, [va], ["a:a_int"], entity_df, registry, config.project, filter_by_created_timestamp=True
    )
    # At t only the first version existed; a day later the correction did.
    assert as_known.to_df()["a_int"].tolist() == [1, 2]


def test_pull_latest_returns_source_columns_so_a_chained_field_mapping_applies_once(config):
    """Feast's engines (and ours) apply the source's field_mapping to what pull_latest returns; a
    chained mapping (amount_usd -> amount, amount -> amount_local) must come out right."""
    from feast.utils import _run_pyarrow_field_mapping

    mapping = {"amount_usd": "amount", "amount": "amount_local"}
    source = DeltaSource(name="chained", path="chained", timestamp_field="ts", field_mapping=mapping)
    t = BASE + timedelta(hours=1)
    write_table(
        config.repo_path / "chained",
        pd.DataFrame(
            {
                "customer_id": [1, 1],
                "ts": [t - timedelta(minutes=1), t],
                "amount_usd": [1.0, 2.0],
                "amount": [10.0, 20.0],
            }
        ),
    )
    table = DeltaOfflineStore.pull_latest_from_table_or_query(
        config, source, ["customer_id"], ["amount_usd", "amount"], "ts", None, BASE, BASE + timedelta(days=1)
    ).to_arrow()
    mapped = _run_pyarrow_field_mapping(table, mapping)
    assert sorted(mapped.column_names) == ["amount", "amount_local", "customer_id", "ts"]
    assert mapped.select(["amount", "amount_local"]).to_pylist() == [{"amount": 2.0, "amount_local": 20.0}]
