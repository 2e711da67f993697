"""``aggregation_view``: declare window features in a feature repo; it registers a Feast FeatureView.

    customer_txn_aggregates = aggregation_view(
        name="customer_txn_aggregates",
        entities=[customer],
        source=payments_push,                  # PushSource whose batch source is the raw events' Delta table
        aggregations=[
            Aggregation("*", "count", ["10m", "1h", "24h"], name="txn_count"),
            Aggregation("amount", "sum", ["10m", "1h", "24h"], name="txn_amount"),
        ],
        owner="fraud-ml@payments.example", description="...",
        tags={"team": ..., "tier": ..., "freshness_sla": ...},
    )

The result is an ordinary Feast ``FeatureView`` (features ``txn_count_10m`` ... with descriptions and
PII tags, so ``fs apply`` governs it like any other view) whose source is the *raw events* and whose
tag ``fs.aggregation`` carries the spec. The Delta store computes its values as of each entity row from
the raw events; the Redis store keeps tiles and merges them at request time; the Kafka ingestor
updates the tiles from the topic that feeds the push source. Its ``ttl`` is the longest window plus
its tile: older events never count.
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.data_source import PushSource
from feast.types import Float64, Int64, from_value_type

from fs_platform.aggregation.expr import Expr
from fs_platform.aggregation.spec import TAG, Aggregation, build_spec
from fs_platform.errors import RepoError


def aggregation_view(
    *,
    name: str,
    entities: list,
    source,
    aggregations: list[Aggregation],
    where: Expr | None = None,
    allowed_lateness: str | timedelta = "1h",
    online: bool = True,
    description: str = "",
    owner: str = "",
    tags: dict[str, str] | None = None,
) -> FeatureView:
    """A Feast FeatureView computing ``aggregations`` over ``source``'s events (see module docstring).

    ``where``: keep only events for which it is true (e.g. ``col("approved") == False``).
    ``allowed_lateness``: an event this much older than its Kafka record's timestamp is dead-lettered
    (reason ``too_late``) instead of counted, and is not appended to the raw events either.
    """
    batch = source.batch_source if isinstance(source, PushSource) else source
    if batch is None:
        raise RepoError(
            f"aggregation view {name!r}: the source needs a batch source (the raw events' Delta table)"
        )
    join_keys = [e.join_key for e in entities]
    if not join_keys:
        raise RepoError(f"aggregation view {name!r}: needs at least one entity (the key to aggregate by)")
    spec = build_spec(name, join_keys, batch.timestamp_field, aggregations, where, allowed_lateness)
    # Entity columns declared, not inferred from the raw events (Feast would infer every event column).
    schema = [Field(name=e.join_key, dtype=from_value_type(e.value_type)) for e in entities]
    schema += [
        Field(
            name=f.name,
            dtype=Int64 if f.dtype == "Int64" else Float64,
            description=f.description,
            tags={"pii": f.pii},
        )
        for f in spec.features
    ]
    return FeatureView(
        name=name,
        entities=entities,
        ttl=timedelta(microseconds=spec.horizon_us),
        schema=schema,
        source=source,
        online=online,
        description=description,
        owner=owner,
        tags={**(tags or {}), TAG: spec.to_json()},
    )
