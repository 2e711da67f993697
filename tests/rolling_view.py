"""A test-only plain feature view recomputed by a Python batch definition, for copies of feature_repo/.

``customer_txn_rolling``: per payment at t, the customer's payment count and amount over (t - 1h, t]
and (t - 24h, t], one row per (customer, instant), in its own Delta table (``data/customer_txn_rolling``),
recomputed from the raw payments by the Python definition ``customer_txn_rolling`` (24h lookback), with
an expectation suite that gates its chunks in warn mode. The example repo's own window features are
aggregation views (no stored rows); tests of the machinery around stored rows (backfill, corrections,
validation, drift, freshness) use this view, as they used the repo's per-payment view before.

    repo = copy_example_repo(tmp)
    add_rolling_view(repo)                 # features.py, backfills.py, expectations/
    data = datagen.generate(...); datagen.write_tables(data, repo / "data")
    write_rolling_table(repo, data)        # the table, computed by the definition itself
"""

from __future__ import annotations

import json
from pathlib import Path

from fs_platform import datagen

ROLLING_VIEW = "customer_txn_rolling"

# Appended to the copy's features.py (which defines customer, _f, FRAUD_TEAM, DeltaSource, ...).
ROLLING_FEATURES = """

# --- test-only (tests/rolling_view.py): a plain view recomputed by a Python batch definition ---
customer_txn_rolling_source = DeltaSource(
    name="customer_txn_rolling_source",
    path="data/customer_txn_rolling",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="Per payment: the customer's payment count and amount over the hour and the day up to it.",
    owner=FRAUD_TEAM,
)

customer_txn_rolling = FeatureView(
    name="customer_txn_rolling",
    entities=[customer],
    ttl=timedelta(days=1),
    schema=[
        _f("txn_count_1h", Int64, "Payments in the hour up to this one."),
        _f("txn_count_24h", Int64, "Payments in the 24 hours up to this one."),
        _f("txn_amount_1h", Float64, "Sum of amounts (USD) in the hour up to this one."),
        _f("txn_amount_24h", Float64, "Sum of amounts (USD) in the 24 hours up to this one."),
    ],
    source=customer_txn_rolling_source,
    online=True,
    description="Rolling payment counts and sums per customer, recomputed in batch (a backfill test view).",
    owner=FRAUD_TEAM,
    tags={"team": "fraud", "tier": "3", "freshness_sla": "1d"},
)
"""

# Appended to the copy's backfills.py (which defines PAYMENTS). Tests
# edit the definition by replacing its return line, ``ROLLING_RETURN``.
ROLLING_RETURN = '    return customer_rolling(ctx.frames["payments"])'
ROLLING_DEFINITION = (
    '''

# --- test-only (tests/rolling_view.py) ---
from fs_platform.backfill.definitions import python_definition


def customer_rolling(pay):
    """Per payment at t: the customer's payments of (t - 1h, t] and (t - 24h, t], counted and summed
    in whole cents, so a row is exact whichever earlier rows the read window starts with. One row per
    (customer, instant): the last, which counts every payment of that instant."""
    import numpy as np
    import pandas as pd

    pay = pay.sort_values(["customer_id", "event_timestamp", "payment_id"], kind="stable")
    pay = pay.reset_index(drop=True)
    us = pay["event_timestamp"].dt.tz_convert(None).astype("datetime64[us]").to_numpy().view("int64")
    cents = np.rint(pay["amount"].to_numpy(dtype="float64") * 100).astype("int64")
    windows = (("1h", 3600), ("24h", 86400))
    counts = {label: np.zeros(len(pay), dtype="int64") for label, _ in windows}
    sums = {label: np.zeros(len(pay), dtype="float64") for label, _ in windows}
    for rows in pay.groupby("customer_id", sort=False).indices.values():
        t = us[rows]
        running = np.concatenate(([0], np.cumsum(cents[rows])))
        position = np.arange(len(rows))
        for label, seconds in windows:
            first = np.searchsorted(t, t - seconds * 1_000_000, side="right")
            counts[label][rows] = position - first + 1
            sums[label][rows] = (running[position + 1] - running[first]) / 100
    out = pd.DataFrame({
        "customer_id": pay["customer_id"].astype("int64"),
        **{f"txn_count_{label}": counts[label] for label, _ in windows},
        **{f"txn_amount_{label}": sums[label] for label, _ in windows},
        "event_timestamp": pay["event_timestamp"],
    })
    out = out.drop_duplicates(["customer_id", "event_timestamp"], keep="last")
    out["created_at"] = out["event_timestamp"] + pd.Timedelta(seconds=1)
    return out.reset_index(drop=True)


@python_definition("customer_txn_rolling", inputs=PAYMENTS, lookback="24h")
def customer_txn_rolling(ctx):
    """Rolling 1h/24h counts and sums as of each payment."""
'''
    + ROLLING_RETURN
    + "\n"
)


# Its expectation suite: gates its chunks in warn mode (as the repo's customer_profile suite does);
# drift thresholds as the repo's defaults.
ROLLING_SUITE = {
    "name": ROLLING_VIEW,
    "meta": {
        "owner": "fraud-ml@payments.example",
        "gate": "warn",
        "drift": {"psi": 0.2, "ks": 0.1, "bins": 10},
    },
    "expectations": [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {
                "column_set": [
                    "customer_id",
                    "event_timestamp",
                    "txn_count_1h",
                    "txn_count_24h",
                    "txn_amount_1h",
                    "txn_amount_24h",
                ],
                "exact_match": False,
            },
        },
        *(
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}}
            for c in ("customer_id", "event_timestamp", "txn_count_1h", "txn_count_24h")
        ),
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "txn_count_1h", "min_value": 1}},
        {
            "type": "expect_column_pair_values_a_to_be_greater_than_b",
            "kwargs": {"column_A": "txn_count_24h", "column_B": "txn_count_1h", "or_equal": True},
        },
    ],
}


def add_rolling_view(repo: Path) -> None:
    """Declare ``customer_txn_rolling``, its Python definition and its suite in a copy of the example repo."""
    with open(repo / "features.py", "a") as fh:
        fh.write(ROLLING_FEATURES)
    with open(repo / "backfills.py", "a") as fh:
        fh.write(ROLLING_DEFINITION)
    (repo / "expectations" / f"{ROLLING_VIEW}.json").write_text(json.dumps(ROLLING_SUITE, indent=2))


def write_rolling_table(repo: Path, data: datagen.Dataset) -> int:
    """``customer_txn_rolling``'s Delta table from ``data.payments``, computed by the repo's definition."""
    from deltalake import write_deltalake

    from fs_platform.backfill.definitions import BatchContext, load_repo

    definition = load_repo(repo).definitions[ROLLING_VIEW]
    times = data.payments["event_timestamp"]
    start, end = times.min().to_pydatetime(), times.max().to_pydatetime()
    rows = definition.function(BatchContext(ROLLING_VIEW, start, end, {"payments": data.payments}))
    write_deltalake(str(repo / "data" / ROLLING_VIEW), datagen.to_arrow(rows), mode="overwrite")
    return len(rows)
