from datetime import UTC, datetime

import pandas as pd
from deltalake import DeltaTable

from fs import datagen

END = datetime(2026, 11, 1, tzinfo=UTC)


def test_same_seed_same_data_different_seed_different_data():
    a = datagen.generate(seed=3, customers=50, merchants=10, days=3, end=END)
    b = datagen.generate(seed=3, customers=50, merchants=10, days=3, end=END)
    c = datagen.generate(seed=4, customers=50, merchants=10, days=3, end=END)
    for name in datagen.TABLES:
        pd.testing.assert_frame_equal(a.tables()[name], b.tables()[name])
    assert not a.payments.equals(c.payments)


def test_aggregates_match_a_direct_count():
    data = datagen.generate(seed=1, customers=20, merchants=5, days=2, end=END)
    pay, agg = data.payments, data.customer_txn_aggregates
    row = agg.iloc[len(agg) // 2]
    window = pay[
        (pay.customer_id == row.customer_id)
        & (pay.event_timestamp > row.event_timestamp - pd.Timedelta("1h"))
        & (pay.event_timestamp <= row.event_timestamp)
    ]
    assert row.txn_count_1h == len(window)
    assert abs(row.txn_amount_1h - window.amount.sum()) < 0.01


def test_tables_are_written_as_delta_with_microsecond_utc_timestamps(tmp_path):
    data = datagen.generate(seed=1, customers=20, merchants=5, days=2, end=END)
    written = datagen.write_tables(data, tmp_path)
    assert written == {n: len(df) for n, df in data.tables().items()}
    table = DeltaTable(str(tmp_path / "customer_txn_aggregates")).to_pyarrow_table()
    ts = table.schema.field("event_timestamp").type
    assert (ts.unit, ts.tz) == ("us", "UTC")
    assert table.num_rows == len(data.customer_txn_aggregates)
    # nothing in the future of the generation end
    assert data.merchant_risk_daily.event_timestamp.max() <= pd.Timestamp(END)
