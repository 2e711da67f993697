"""#18.6: with OpenTelemetry on, one trace follows a retrieval from the API call to the Spark job:
``get_historical_features`` (the caller's span) -> ``fs.retrieval.historical`` -> ``fs.spark.query``,
the query running later, when the lazy job is read, yet in the same trace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field
from feast.types import Float64
from opentelemetry import trace

from fs_platform.plugins.delta import DeltaSource
from tests.plugins.delta.delta_helpers import make_config, write_table
from tests.tracing import collected_spans, named, parent_of

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _store(path) -> FeatureStore:
    rows = pd.DataFrame(
        {"customer_id": [1, 2, 3], "score": [0.1, 0.2, 0.3], "event_timestamp": [T0 - timedelta(hours=1)] * 3}
    )
    write_table(path / "scores", rows)
    customer = Entity(name="customer", join_keys=["customer_id"])
    view = FeatureView(
        name="customer_score",
        entities=[customer],
        ttl=timedelta(days=1),
        schema=[Field(name="score", dtype=Float64)],
        source=DeltaSource(name="scores", path="scores", timestamp_field="event_timestamp"),
    )
    store = FeatureStore(config=make_config(path))
    store.apply([customer, view])
    return store


def test_a_retrieval_is_one_trace_from_the_api_call_to_the_spark_query(tmp_path, engine):
    store = _store(tmp_path)
    entity_df = pd.DataFrame({"customer_id": [1, 2, 4], "event_timestamp": [T0] * 3})
    with collected_spans() as exporter:
        with trace.get_tracer("notebook").start_as_current_span("train") as caller:
            job = store.get_historical_features(entity_df, features=["customer_score:score"])
        result = job.to_df()  # the Spark query runs here, after the caller's span ended
        spans = exporter.get_finished_spans()

    assert result["score"].tolist()[:2] == [0.1, 0.2] and pd.isna(result["score"].iloc[2])
    (historical,) = named(spans, "fs.retrieval.historical")
    (query,) = named(spans, "fs.spark.query")
    assert historical.parent.span_id == caller.get_span_context().span_id
    assert parent_of(spans, query) is historical
    assert {historical.context.trace_id, query.context.trace_id} == {caller.get_span_context().trace_id}
    assert query.start_time >= historical.end_time  # lazy: run after the API call returned
    assert dict(historical.attributes) == {"views": "customer_score", "features": 1, "entity_df": "DataFrame"}
    assert query.attributes["rows"] == 3
