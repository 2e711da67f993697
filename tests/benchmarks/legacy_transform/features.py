"""The plain ``customer_txn_aggregates`` view the deleted hand-written transform fed (benchmark baseline
only).

Copied from ``feature_repo/features.py`` as of commit 6f9e42e^ (before aggregation views replaced it):
the customer entity, the Delta batch source, the push source and the plain view, unchanged. The
benchmarks copy this folder beside the example repo's ``feature_store.yaml``
(tests/benchmarks/bench_ingest.py, bench_ingest_recovery.py); it is not part of the example repo.
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field, PushSource
from feast.types import Float64, Int64
from feast.value_type import ValueType

from fs_platform.plugins.delta import DeltaSource

FRAUD_TEAM = "fraud-ml@payments.example"


def _f(name, dtype, description, pii="none"):
    return Field(name=name, dtype=dtype, description=description, tags={"pii": pii})


customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A card holder (pseudonymous id; no direct identifiers).",
    owner=FRAUD_TEAM,
    tags={"pii": "pseudonymous"},
)

# --- customer transaction aggregates: stream (push) with a Delta batch source behind it --------
customer_txn_batch_source = DeltaSource(
    name="customer_txn_aggregates_batch",
    path="data/customer_txn_aggregates",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="Offline copy of the streaming customer transaction aggregates.",
    owner=FRAUD_TEAM,
)

customer_txn_push = PushSource(
    name="customer_txn_push",
    batch_source=customer_txn_batch_source,
    description="Stream path: the Kafka ingestor pushes customer transaction aggregates here.",
    owner=FRAUD_TEAM,
)

customer_txn_aggregates = FeatureView(
    name="customer_txn_aggregates",
    entities=[customer],
    ttl=timedelta(days=1),
    schema=[
        _f("txn_count_10m", Int64, "Transactions in the last 10 minutes."),
        _f("txn_count_1h", Int64, "Transactions in the last hour."),
        _f("txn_count_24h", Int64, "Transactions in the last 24 hours."),
        _f("txn_amount_10m", Float64, "Sum of amounts (USD) in the last 10 minutes."),
        _f("txn_amount_1h", Float64, "Sum of amounts (USD) in the last hour."),
        _f("txn_amount_24h", Float64, "Sum of amounts (USD) in the last 24 hours."),
        _f("avg_amount_24h", Float64, "Mean amount (USD) in the last 24 hours."),
    ],
    source=customer_txn_push,
    online=True,
    description="Rolling transaction counts and sums per customer, fed by the payments stream.",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "1", "freshness_sla": "15m"},
)
