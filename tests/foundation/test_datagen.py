from datetime import UTC, datetime

import pandas as pd
from deltalake import DeltaTable

from fs_platform import datagen

END = datetime(2026, 11, 1, tzinfo=UTC)


def test_same_seed_same_data_different_seed_different_data():
    a = datagen.generate(seed=3, customers=50, merchants=10, days=3, end=END)
    b = datagen.generate(seed=3, customers=50, merchants=10, days=3, end=END)
    c = datagen.generate(seed=4, customers=50, merchants=10, days=3, end=END)
    pd.testing.assert_frame_equal(a.payments, b.payments)
    for name in datagen.TABLES:
        pd.testing.assert_frame_equal(a.tables()[name], b.tables()[name])
    assert not a.payments.equals(c.payments)


def test_merchant_daily_stats_match_a_direct_count():
    """The batch table derived from the payments agrees with counting them directly: day D's stats
    are published at the end of D (event time D + 1 day)."""
    data = datagen.generate(seed=1, customers=20, merchants=5, days=2, end=END)
    pay, daily = data.payments, data.merchant_risk_daily
    row = daily.iloc[len(daily) // 2]
    day = row.event_timestamp - pd.Timedelta(days=1)
    window = pay[
        (pay.merchant_id == row.merchant_id)
        & (pay.event_timestamp >= day)
        & (pay.event_timestamp < row.event_timestamp)
    ]
    assert row.txn_volume_1d == len(window) > 0
    assert abs(row.txn_amount_1d - window.amount.sum()) < 0.01
    assert row.distinct_customers_1d == window.customer_id.nunique()
    assert row.approval_rate_1d == window.approved.mean()


def test_tables_are_written_as_delta_with_microsecond_utc_timestamps(tmp_path):
    data = datagen.generate(seed=1, customers=20, merchants=5, days=2, end=END)
    written = datagen.write_tables(data, tmp_path)
    # The feature tables and the raw payments (the aggregation views' events).
    assert written == {**{n: len(df) for n, df in data.tables().items()}, "payments": len(data.payments)}
    for name in (*datagen.TABLES, "payments"):
        table = DeltaTable(str(tmp_path / name)).to_pyarrow_table()
        ts = table.schema.field("event_timestamp").type
        assert (ts.unit, ts.tz) == ("us", "UTC"), name
        assert table.num_rows == written[name]
    # nothing in the future of the generation end
    assert data.merchant_risk_daily.event_timestamp.max() <= pd.Timestamp(END)
    assert data.payments.event_timestamp.max() < pd.Timestamp(END)
