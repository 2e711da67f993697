"""#14.4: get_historical_features answers in requested feature order (stock Feast groups the features
per view and appends on-demand features last), with and without full feature names, every run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64
from feast.value_type import ValueType

from fs_platform.plugins.delta import DeltaSource
from tests.plugins.delta.delta_helpers import make_config, write_table

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FEATURES = ["b:q", "a:z", "double_x:x2", "a:x", "b:p", "a:y"]


@pytest.fixture
def store(tmp_path, engine):
    ts = [T0 - timedelta(hours=1)] * 2
    write_table(
        tmp_path / "a", pd.DataFrame({"id": [1, 2], "x": [1.0, 2.0], "y": [3, 4], "z": [5, 6], "ts": ts})
    )
    write_table(tmp_path / "b", pd.DataFrame({"id": [1, 2], "p": [7, 8], "q": [9.0, 10.0], "ts": ts}))
    entity = Entity(name="thing", join_keys=["id"], value_type=ValueType.INT64)

    def view(name: str, schema: list[Field]) -> FeatureView:
        source = DeltaSource(name=name, path=str(tmp_path / name), timestamp_field="ts")
        return FeatureView(name=name, entities=[entity], ttl=timedelta(days=1), schema=schema, source=source)

    a = view(
        "a",
        [
            Field(name="id", dtype=Int64),
            Field(name="x", dtype=Float64),
            Field(name="y", dtype=Int64),
            Field(name="z", dtype=Int64),
        ],
    )
    b = view(
        "b", [Field(name="id", dtype=Int64), Field(name="p", dtype=Int64), Field(name="q", dtype=Float64)]
    )

    @on_demand_feature_view(sources=[a], schema=[Field(name="x2", dtype=Float64)])
    def double_x(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"x2": inputs["x"] * 2})

    fs = FeatureStore(config=make_config(tmp_path))
    fs.apply([entity, a, b, double_x])
    return fs


@pytest.mark.parametrize("full", [False, True])
def test_historical_features_come_in_requested_order(store, full):
    entity_df = pd.DataFrame({"id": [2, 1], "event_timestamp": [T0, T0]})
    names = [r.replace(":", "__") if full else r.split(":")[1] for r in FEATURES]
    for _ in range(2):
        got = store.get_historical_features(entity_df, FEATURES, full_feature_names=full).to_df()
        assert list(got.columns) == ["id", "event_timestamp", *names]
    values = dict(zip(names, [[10.0, 9.0], [6, 5], [4.0, 2.0], [2.0, 1.0], [8, 7], [4, 3]], strict=True))
    assert {n: got[n].tolist() for n in names} == values
    plain = [f for f in FEATURES if not f.startswith("double_x")]
    table = store.get_historical_features(entity_df, plain, full_feature_names=full).to_arrow()
    assert table.column_names == ["id", "event_timestamp", *[n for n in names if "x2" not in n]]
