"""Deterministic synthetic payments data for the example repo, the demo, tests and benchmarks.

``generate(seed, customers, merchants, days, end)`` returns the raw payment events (the input of the
repo's aggregation views) and the two batch feature tables of ``feature_repo`` computed from them;
``write_tables`` writes them as Delta.
Same arguments, same rows. ``payment_events`` yields the same events as JSON-ready dicts for Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

COUNTRIES = ["NG", "KE", "GH", "ZA", "EG", "BR", "MX", "IN", "ID", "PH"]
EMAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "proton.me", "mail.ng", "icloud.com"]
TABLES = ("merchant_risk_daily", "customer_profile")


@dataclass
class Dataset:
    payments: pd.DataFrame
    merchant_risk_daily: pd.DataFrame
    customer_profile: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}


def default_end() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _payments(
    rng, customers: int, merchants: int, start: datetime, end: datetime, per_day: float
) -> pd.DataFrame:
    span = (end - start).total_seconds()
    n = max(1, int(customers * per_day * span / 86400))
    # Heavy-tailed activity: a few customers and merchants do most of the volume.
    cust = rng.zipf(1.6, n) % customers + 1
    merch = rng.zipf(1.4, n) % merchants + 1
    offsets = np.sort(rng.uniform(0, span, n))
    ts = pd.to_datetime(start) + pd.to_timedelta(offsets, unit="s")
    amount = np.round(rng.lognormal(3.2, 1.0, n), 2)
    risky = (merch % 17 == 0) | (amount > 400)
    approved = rng.uniform(0, 1, n) > np.where(risky, 0.35, 0.06)
    chargeback = approved & (rng.uniform(0, 1, n) < np.where(risky, 0.04, 0.004))
    return pd.DataFrame(
        {
            "payment_id": np.arange(1, n + 1, dtype="int64"),
            "customer_id": cust.astype("int64"),
            "merchant_id": merch.astype("int64"),
            "amount": amount,
            "approved": approved,
            "chargeback": chargeback,
            "event_timestamp": ts.floor("us"),
        }
    )


def _merchant_daily(pay: pd.DataFrame, end: datetime) -> pd.DataFrame:
    p = pay.assign(day=pay["event_timestamp"].dt.floor("D"))
    g = p.groupby(["merchant_id", "day"])
    daily = g.agg(
        txn_volume_1d=("payment_id", "size"),
        approved=("approved", "sum"),
        txn_amount_1d=("amount", "sum"),
        distinct_customers_1d=("customer_id", "nunique"),
        chargebacks=("chargeback", "sum"),
    ).reset_index()
    daily = daily.sort_values(["merchant_id", "day"])
    roll = (
        daily.set_index("day")
        .groupby("merchant_id")[["chargebacks", "approved"]]
        .rolling("30D")
        .sum()
        .reset_index()
    )
    daily = daily.merge(roll, on=["merchant_id", "day"], suffixes=("", "_30d"))
    # Stats for day D are published at the end of D (event time) and land a few minutes later.
    event_ts = daily["day"] + pd.Timedelta(days=1)
    daily = daily[event_ts <= pd.Timestamp(end)]
    event_ts = event_ts[daily.index]
    return pd.DataFrame(
        {
            "merchant_id": daily["merchant_id"].astype("int64"),
            "chargeback_rate_30d": (daily["chargebacks_30d"] / daily["approved_30d"].clip(lower=1)).astype(
                "float64"
            ),
            "approval_rate_1d": (daily["approved"] / daily["txn_volume_1d"]).astype("float64"),
            "txn_volume_1d": daily["txn_volume_1d"].astype("int64"),
            "txn_amount_1d": daily["txn_amount_1d"].round(2).astype("float64"),
            "avg_ticket_1d": (daily["txn_amount_1d"] / daily["txn_volume_1d"]).round(4).astype("float64"),
            "distinct_customers_1d": daily["distinct_customers_1d"].astype("int64"),
            "event_timestamp": event_ts,
            "created_at": event_ts + pd.Timedelta(minutes=7),
        }
    ).reset_index(drop=True)


def _customer_profile(rng, customers: int, start: datetime, end: datetime) -> pd.DataFrame:
    ids = np.arange(1, customers + 1, dtype="int64")
    span = (end - start).total_seconds()
    seen = pd.to_datetime(start) + pd.to_timedelta(rng.uniform(0, span / 4, customers), unit="s")
    opened_days_before = rng.integers(1, 2000, customers)
    base = pd.DataFrame(
        {
            "customer_id": ids,
            "country": rng.choice(COUNTRIES, customers),
            "email_domain": rng.choice(EMAIL_DOMAINS, customers),
            "account_age_days": opened_days_before.astype("int64"),
            "kyc_level": rng.integers(0, 4, customers).astype("int32"),
            "is_verified": rng.uniform(0, 1, customers) > 0.3,
            "event_timestamp": seen.floor("us"),
        }
    )
    # A fifth of customers get a later KYC upgrade: a second snapshot with a newer event time.
    up = base.sample(frac=0.2, random_state=int(rng.integers(0, 2**31))).copy()
    delay = pd.to_timedelta(rng.uniform(3600, span / 2, len(up)), unit="s")
    up["event_timestamp"] = (up["event_timestamp"] + delay).dt.floor("us")
    up["kyc_level"] = np.minimum(up["kyc_level"] + 1, 3).astype("int32")
    up["is_verified"] = True
    out = pd.concat([base, up], ignore_index=True)
    out["account_age_days"] = (
        out["account_age_days"] + (out["event_timestamp"] - pd.Timestamp(start)).dt.days
    ).astype("int64")
    out["created_at"] = out["event_timestamp"] + pd.Timedelta(seconds=30)
    return out.sort_values(["event_timestamp", "customer_id"]).reset_index(drop=True)


def generate(
    seed: int = 7,
    customers: int = 2000,
    merchants: int = 200,
    days: int = 14,
    end: datetime | None = None,
    payments_per_customer_day: float = 3.0,
) -> Dataset:
    """All tables of the example repo for ``days`` days ending at ``end`` (default: this hour)."""
    end = (end or default_end()).astimezone(UTC)
    start = end - timedelta(days=days)
    rng = np.random.default_rng(seed)
    pay = _payments(rng, customers, merchants, start, end, payments_per_customer_day)
    return Dataset(
        payments=pay,
        merchant_risk_daily=_merchant_daily(pay, end),
        customer_profile=_customer_profile(rng, customers, start, end),
    )


def to_arrow(df: pd.DataFrame):
    """pyarrow Table with microsecond UTC timestamps (Spark rejects nanoseconds)."""
    import pyarrow as pa

    from fs_platform.timeutil import microsecond_timestamps

    return microsecond_timestamps(pa.Table.from_pandas(df, preserve_index=False))


def write_tables(data: Dataset, data_dir: str | Path, mode: str = "overwrite") -> dict[str, int]:
    """Write each feature table as a Delta table under ``data_dir``; returns rows written per table.

    The raw payments are written too, as ``data_dir/payments``: the events the aggregation views
    aggregate, and the input the repo's batch definitions (feature_repo/backfills.py) recompute the
    other tables from.
    """
    from deltalake import write_deltalake

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    schema_mode = "overwrite" if mode == "overwrite" else None
    written = {}
    for name, df in data.tables().items():
        write_deltalake(str(data_dir / name), to_arrow(df), mode=mode, schema_mode=schema_mode)
        written[name] = len(df)
    write_deltalake(str(data_dir / "payments"), to_arrow(data.payments), mode=mode, schema_mode=schema_mode)
    written["payments"] = len(data.payments)
    return written


def payment_events(data: Dataset):
    """The raw payments as JSON-ready dicts, in event-time order (what the demo produces to Kafka)."""
    for row in data.payments.itertuples(index=False):
        yield {
            "payment_id": int(row.payment_id),
            "customer_id": int(row.customer_id),
            "merchant_id": int(row.merchant_id),
            "amount": float(row.amount),
            "approved": bool(row.approved),
            "event_timestamp": row.event_timestamp.isoformat(),
        }
