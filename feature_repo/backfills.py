"""Batch definitions: how `fs backfill` recomputes each view's offline rows from raw data.

Not a Feast definition file (listed in .feastignore). Each definition names its input Delta tables
(relative to this folder) and the lookback its windows need; the runner reads
``[start - lookback, end)`` of every input for one compute pass (one chunk, or several adjacent
chunks: ``backfill.compute_span``) and keeps the output rows whose event time falls in ``[start, end)``,
then commits them chunk by chunk. See docs/backfill.md.

Aggregation views (customer_txn_aggregates, ...) need no definition here: their offline values are
computed from the raw events at retrieval, and `fs materialize` rebuilds their online tiles.
"""

from fs_platform.backfill.definitions import sql_definition

PAYMENTS = {"payments": "data/payments"}


# Stats of day D are published at the end of D (event time D + 1 day); the 30-day chargeback rate
# needs the 29 days before D as well, hence the 30-day lookback.
merchant_risk_daily = sql_definition(
    "merchant_risk_daily",
    inputs=PAYMENTS,
    lookback="30d",
    query="""
    WITH daily AS (
      SELECT merchant_id,
             date_trunc('DAY', event_timestamp) AS day,
             count(*) AS txn_volume_1d,
             sum(CAST(approved AS BIGINT)) AS approved,
             sum(amount) AS amount,
             count(DISTINCT customer_id) AS distinct_customers_1d,
             sum(CAST(chargeback AS BIGINT)) AS chargebacks
      FROM payments
      GROUP BY merchant_id, date_trunc('DAY', event_timestamp)
    ), rolled AS (
      SELECT *,
             sum(chargebacks) OVER w AS chargebacks_30d,
             sum(approved) OVER w AS approved_30d
      FROM daily
      WINDOW w AS (PARTITION BY merchant_id ORDER BY unix_date(CAST(day AS DATE))
                   RANGE BETWEEN 29 PRECEDING AND CURRENT ROW)
    )
    SELECT merchant_id,
           CAST(chargebacks_30d AS DOUBLE) / greatest(approved_30d, 1) AS chargeback_rate_30d,
           CAST(approved AS DOUBLE) / txn_volume_1d AS approval_rate_1d,
           txn_volume_1d,
           round(amount, 2) AS txn_amount_1d,
           round(amount / txn_volume_1d, 4) AS avg_ticket_1d,
           distinct_customers_1d,
           day + INTERVAL 1 DAY AS event_timestamp,
           day + INTERVAL 1 DAY + INTERVAL 7 MINUTES AS created_at
    FROM rolled
    """,
)
