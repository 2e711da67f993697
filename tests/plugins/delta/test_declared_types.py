"""#14.1: feature views declaring types narrower than their Delta table (Int32/Float32 over bigint/double),
as Feast repos routinely do: cast in retrieval and materialization, every value checked to fit.

Real Delta tables, embedded Sail, the machine's Redis (db 9, a unique project per test)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field
from feast.types import Float32, Int32, Int64
from feast.value_type import ValueType

from fs_platform.errors import BackfillError, SchemaMismatchError, ValueDoesNotFitError
from fs_platform.plugins.delta import DeltaSource
from tests.plugins.delta.delta_helpers import redis_delta_store, write_table

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
REDIS_URL = "redis://127.0.0.1:6379/9"


def _store(tmp_path, project: str) -> FeatureStore:
    return redis_delta_store(tmp_path, REDIS_URL, project)


@pytest.fixture
def narrow(tmp_path, engine):
    """A table of bigint/double columns and a view declaring them Int32/Float32 (plus an Int32 view
    over a double column); yields (store, write(df) -> None)."""
    project = "t" + uuid.uuid4().hex[:10]
    store = _store(tmp_path, project)
    path = tmp_path / "stats"

    def write(df: pd.DataFrame) -> None:
        write_table(path, df)

    write(_rows([10, 20, 30], [1.5, 2.25, 3.0], [4.0, 5.0, 6.0]))
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    source = DeltaSource(name="stats_src", path=str(path), timestamp_field="event_timestamp")
    view = FeatureView(
        name="stats",
        entities=[customer],
        ttl=timedelta(days=30),
        schema=[
            Field(name="customer_id", dtype=Int64),
            Field(name="n", dtype=Int32),
            Field(name="x", dtype=Float32),
        ],
        source=source,
    )
    whole = FeatureView(
        name="whole",
        entities=[customer],
        ttl=timedelta(days=30),
        schema=[Field(name="customer_id", dtype=Int64), Field(name="w", dtype=Int32)],
        source=source,
    )
    store.apply([customer, view, whole])
    yield store, write
    store.teardown()


def _rows(n: list, x: list, w: list) -> pd.DataFrame:
    k = len(n)
    return pd.DataFrame(
        {
            "customer_id": pd.array(range(1, k + 1), dtype="int64"),
            "n": pd.array(n, dtype="int64"),  # bigint in Delta
            "x": pd.array(x, dtype="float64"),  # double
            "w": pd.array(w, dtype="float64"),  # double, declared Int32
            "label": [f"l{i}" for i in range(k)],  # string: no number type casts from it
            "event_timestamp": [T0 - timedelta(hours=i) for i in range(k)],
        }
    )


def _entity_df(k: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": list(range(1, k + 1)), "event_timestamp": [T0] * k})


def test_narrower_declared_types_are_cast_in_retrieval(narrow):
    store, _ = narrow
    table = store.get_historical_features(_entity_df(), features=["stats:n", "stats:x", "whole:w"]).to_arrow()
    assert table.schema.field("n").type == pa.int32()
    assert table.schema.field("x").type == pa.float32()
    assert table.schema.field("w").type == pa.int32()  # whole doubles into Int32
    assert table.column("n").to_pylist() == [10, 20, 30]
    assert table.column("x").to_pylist() == [1.5, 2.25, 3.0]
    assert table.column("w").to_pylist() == [4, 5, 6]


def test_values_that_do_not_fit_are_one_error_naming_view_feature_and_count(narrow):
    store, write = narrow
    write(_rows([10, 2**40, 3 * 2**33], [1.5, 1e300, 3.0], [4.0, 5.5, 6.0]))
    with pytest.raises(ValueDoesNotFitError, match=r"'stats': 2 value\(s\) of feature 'n' do not fit") as err:
        store.get_historical_features(_entity_df(), features=["stats:n"]).to_df()
    assert str(2**40) not in str(err.value)  # no values in errors (they may be PII)
    with pytest.raises(ValueDoesNotFitError, match=r"'stats': 1 value\(s\) of feature 'x'"):
        store.get_historical_features(_entity_df(), features=["stats:x"]).to_df()
    with pytest.raises(ValueDoesNotFitError, match=r"'whole': 1 value\(s\) of feature 'w'"):  # 5.5 into Int32
        store.get_historical_features(_entity_df(), features=["whole:w"]).to_df()


def test_materialization_casts_and_refuses_values_that_do_not_fit(narrow):
    store, write = narrow
    store.materialize(T0 - timedelta(days=1), T0 + timedelta(seconds=1), ["stats", "whole"])
    got = store.get_online_features(
        ["stats:n", "stats:x", "whole:w"], [{"customer_id": i} for i in (1, 2, 3)]
    )
    assert got.to_dict()["n"] == [10, 20, 30]
    assert got.to_dict()["w"] == [4, 5, 6] and all(type(v) is int for v in got.to_dict()["w"])
    assert got.to_dict()["x"] == [1.5, 2.25, 3.0]

    write(_rows([10, 2**40, 30], [1.5, 2.0, 3.0], [4.0, 5.0, 6.25]))
    for view, feature in (("stats", "n"), ("whole", "w")):
        # Feast's materialize runs the fs runner (#20.3): the failed chunk's error, as in `fs materialize`
        misfit = rf"ValueDoesNotFitError: feature view '{view}': 1 value\(s\) of feature '{feature}'"
        with pytest.raises(BackfillError, match=misfit):
            store.materialize(T0 - timedelta(days=1), T0 + timedelta(seconds=1), [view])
    # nothing of the refused batches was written
    assert store.get_online_features(["stats:n"], [{"customer_id": 2}]).to_dict()["n"] == [20]
    assert redis.Redis.from_url(REDIS_URL).ping()


def test_types_that_cannot_be_cast_stay_refused(narrow):
    store, _ = narrow
    view = store.get_feature_view("stats")
    wrong = FeatureView(
        name="stats",
        entities=[store.get_entity("customer")],
        ttl=view.ttl,
        schema=[*view.entity_columns, Field(name="label", dtype=Int32)],
        source=view.batch_source,
    )
    store.apply([wrong])
    with pytest.raises(SchemaMismatchError, match="'label' is Int32 in the view but string in Delta"):
        store.get_historical_features(_entity_df(), features=["stats:label"]).to_df()


def test_fs_apply_check_accepts_narrower_numbers_and_refuses_uncastable_types(narrow):
    """The check `fs apply` runs (plugins.delta.schema) is retrieval's: the same accept and refuse."""
    from fs_platform.plugins.delta.schema import schema_problems, table_columns

    store, _ = narrow
    view = store.get_feature_view("stats")
    assert schema_problems(view, table_columns(view, store.config)) == []
    wrong = FeatureView(
        name="stats",
        entities=[store.get_entity("customer")],
        ttl=view.ttl,
        schema=[*view.entity_columns, Field(name="n", dtype=Int32), Field(name="label", dtype=Float32)],
        source=view.batch_source,
    )
    problems = schema_problems(wrong, table_columns(wrong, store.config))
    assert len(problems) == 1 and "'label' is Float32 in the view but string in Delta" in problems[0]
