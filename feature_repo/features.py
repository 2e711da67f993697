"""Payments / fraud feature repo: the one repo the demo, the docs and the tests share.

Metadata convention (enforced by `fs apply`, see fs/policy.py):
- every feature view: ``owner`` (email), ``description``, tags ``team``, ``tier`` and ``freshness_sla``;
- every feature: a ``description`` and a ``pii`` tag: ``none`` / ``pseudonymous`` / ``pii``.
"""

from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, PushSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, Int32, Int64, String
from feast.value_type import ValueType

from fs_platform.aggregation import Aggregation, aggregation_view, col
from fs_platform.metadata import feature_meta
from fs_platform.plugins.delta import DeltaSource

RISK_TEAM = "risk-ml@payments.example"
FRAUD_TEAM = "fraud-ml@payments.example"


def _f(name, dtype, description, pii="none"):
    return Field(name=name, dtype=dtype, description=description, tags={"pii": pii})


# --- entities -------------------------------------------------------------------------------
customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A card holder (pseudonymous id; no direct identifiers).",
    owner=FRAUD_TEAM,
    tags={"pii": "pseudonymous"},
)
merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.INT64,
    description="An acquiring merchant account.",
    owner=RISK_TEAM,
    tags={"pii": "none"},
)

# --- merchant risk: daily batch ---------------------------------------------------------------
merchant_risk_source = DeltaSource(
    name="merchant_risk_daily_source",
    path="data/merchant_risk_daily",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="Daily merchant risk statistics computed by the nightly risk job.",
    owner=RISK_TEAM,
)

merchant_risk_daily = FeatureView(
    name="merchant_risk_daily",
    entities=[merchant],
    ttl=timedelta(days=2),
    schema=[
        _f("chargeback_rate_30d", Float64, "Chargebacks / settled transactions over the last 30 days."),
        _f("approval_rate_1d", Float64, "Approved / attempted authorisations over the last day."),
        _f("txn_volume_1d", Int64, "Number of authorisation attempts over the last day."),
        _f("txn_amount_1d", Float64, "Sum of attempted amounts (USD) over the last day."),
        _f("avg_ticket_1d", Float64, "Mean attempted amount (USD) over the last day."),
        _f("distinct_customers_1d", Int64, "Distinct card holders seen over the last day."),
    ],
    source=merchant_risk_source,
    online=True,
    description="Daily merchant risk statistics (chargebacks, approvals, volume).",
    owner=RISK_TEAM,
    tags={"team": "risk", "tier": "1", "freshness_sla": "36h"},
)

# --- customer profile (PII) -------------------------------------------------------------------
customer_profile_source = DeltaSource(
    name="customer_profile_source",
    path="data/customer_profile",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="Customer profile snapshots from the KYC service.",
    owner=FRAUD_TEAM,
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=365),
    schema=[
        _f("country", String, "ISO 3166 country of residence.", pii="pseudonymous"),
        _f("email_domain", String, "Domain part of the customer's e-mail address.", pii="pii"),
        _f("account_age_days", Int64, "Days since the account was opened."),
        _f("kyc_level", Int32, "KYC verification level (0 none .. 3 full)."),
        _f("is_verified", Bool, "Whether the customer passed identity verification."),
    ],
    source=customer_profile_source,
    online=True,
    description="Customer profile attributes from KYC, including PII-classified fields.",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "2", "freshness_sla": "7d"},
)

# --- window aggregations over the raw payment events (docs/aggregations.md) -----------------------
# Declared once: Spark computes them as of each entity row for training, the Redis store merges
# tiles at request time online, `fs materialize` rebuilds the tiles from the Delta events.
payments_source = DeltaSource(
    name="payments_source",
    path="data/payments",
    timestamp_field="event_timestamp",
    description="Raw payment events (authorisation attempts): the input of the aggregation views.",
    owner=FRAUD_TEAM,
)

payments_push = PushSource(
    name="payments_push",
    batch_source=payments_source,
    description=(
        "Stream path: the Kafka ingestor pushes raw payment events here (topic payments, ingest.yaml)."
    ),
    owner=FRAUD_TEAM,
)

declined = col("approved") == False  # noqa: E712 - an expression, compiled to Spark and Arrow

customer_txn_aggregates = aggregation_view(
    name="customer_txn_aggregates",
    entities=[customer],
    source=payments_push,
    aggregations=[
        Aggregation("*", "count", ["10m", "1h", "24h"], name="txn_count", description="Transactions"),
        Aggregation(
            "amount", "sum", ["10m", "1h", "24h"], name="txn_amount", description="Sum of amounts (USD)"
        ),
        Aggregation("amount", "mean", ["24h"], name="avg_amount", description="Mean amount (USD)"),
    ],
    description="Rolling transaction counts and sums per customer, fed by the payments stream.",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "1", "freshness_sla": "15m"},
)

merchant_txn_aggregates = aggregation_view(
    name="merchant_txn_aggregates",
    entities=[merchant],
    source=payments_push,
    aggregations=[
        Aggregation(
            "*",
            "count",
            ["1h", "24h"],
            name="merchant_txn_count",
            description="Authorisation attempts at the merchant",
        ),
        Aggregation(
            declined,
            "mean",
            ["1h", "24h"],
            name="merchant_decline_rate",
            description="Share of the merchant's authorisation attempts that were declined",
        ),
        Aggregation(
            "amount",
            "sum",
            ["1h", "24h"],
            name="merchant_txn_amount",
            description="Sum of attempted amounts (USD) at the merchant",
        ),
    ],
    description="A merchant's recent volume and decline rate (a burst of declines is a card-testing signal).",
    owner=RISK_TEAM,
    tags={"team": "risk", "tier": "1", "freshness_sla": "15m"},
)

customer_amount_stats = aggregation_view(
    name="customer_amount_stats",
    entities=[customer],
    source=payments_push,
    aggregations=[
        Aggregation("amount", "max", ["1h", "24h"], name="max_amount", description="Largest amount (USD)"),
        Aggregation(
            "amount",
            "stddev",
            ["7d"],
            name="amount_stddev",
            description="Sample standard deviation of amounts (USD)",
        ),
        Aggregation(
            "amount", "last", ["24h"], name="last_amount", description="Amount (USD) of the latest payment"
        ),
        Aggregation(declined, "sum", ["10m", "1h"], name="declines", description="Declined payments"),
    ],
    description="Spread and extremes of a customer's payment amounts, and recent declines.",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "2", "freshness_sla": "15m"},
)

customer_merchant_spread = aggregation_view(
    name="customer_merchant_spread",
    entities=[customer],
    source=payments_push,
    aggregations=[
        Aggregation(
            "merchant_id",
            "approx_count_distinct",
            ["24h"],
            name="distinct_merchants",
            description="Distinct merchants the customer paid (HyperLogLog estimate, ~6.5% error above ~100)",
        ),
    ],
    description="How many different merchants a customer paid in the last 24 hours (card testing spreads "
    "across merchants).",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "2", "freshness_sla": "15m"},
)

# --- on-demand: the current payment relative to the customer's 24h average --------------------
transaction_request = RequestSource(
    name="transaction_request",
    schema=[Field(name="amount", dtype=Float64, description="Amount (USD) of the payment being scored.")],
)


# Feast 0.67 cannot apply on-demand fields that carry descriptions or tags (it compares them to the
# bare fields it infers), so their metadata lives in the view's tags: see fs.metadata.feature_meta.
@on_demand_feature_view(
    sources=[customer_txn_aggregates, transaction_request],
    schema=[
        Field(name="amount_to_avg_24h_ratio", dtype=Float64),
        Field(name="amount_above_avg_24h", dtype=Bool),
    ],
    description="Payment amount relative to the customer's 24-hour average.",
    owner=FRAUD_TEAM,
    tags={
        "team": "fraud",
        "tier": "1",
        "freshness_sla": "15m",
        **feature_meta(
            "amount_to_avg_24h_ratio", "Payment amount divided by the customer's 24h mean amount.", "none"
        ),
        **feature_meta(
            "amount_above_avg_24h", "Whether the payment is above the customer's 24h mean amount.", "none"
        ),
    },
)
def txn_amount_vs_history(inputs: pd.DataFrame) -> pd.DataFrame:
    avg = inputs["avg_amount_24h"].astype("float64")
    amount = inputs["amount"].astype("float64")
    out = pd.DataFrame(index=inputs.index)
    out["amount_to_avg_24h_ratio"] = (amount / avg.where(avg > 0)).fillna(0.0)
    out["amount_above_avg_24h"] = (amount > avg.fillna(float("inf"))).astype(bool)
    return out


fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[
        merchant_risk_daily,
        customer_profile[["country", "account_age_days", "kyc_level", "is_verified"]],
        customer_txn_aggregates,
        txn_amount_vs_history,
    ],
    description="Features of the card fraud scoring model, version 1.",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "1"},
)


fraud_model_v2 = FeatureService(
    name="fraud_model_v2",
    features=[
        merchant_risk_daily,
        customer_profile[["country", "account_age_days", "kyc_level", "is_verified"]],
        customer_txn_aggregates,
        merchant_txn_aggregates,
        customer_amount_stats,
        customer_merchant_spread,
        txn_amount_vs_history,
    ],
    description="Features of the card fraud scoring model, version 2: v1 plus merchant decline rates, "
    "the customer's amount statistics and merchant spread (window aggregations).",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "1"},
)
