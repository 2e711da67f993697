"""The end-to-end demo behind ``fs demo`` / ``make demo``, on embedded defaults.

Generates seeded payments data into the repo's Delta tables, applies the repo, materializes the
recent window into the online store, reads online features for a few customers through the
``fraud_model_v2`` feature service, and builds a point-in-time training frame from the offline store.
If the Kafka ingestor is available it also streams fresh payments through it and shows the
stream-fed features change online.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

from fs_platform import datagen
from fs_platform.platform import Platform

log = logging.getLogger(__name__)

ONLINE_FEATURES = [
    "merchant_risk_daily:chargeback_rate_30d",
    "merchant_risk_daily:approval_rate_1d",
    "customer_profile:kyc_level",
    "customer_txn_aggregates:txn_count_24h",
    "customer_txn_aggregates:avg_amount_24h",
    "merchant_txn_aggregates:merchant_decline_rate_1h",
    "customer_amount_stats:max_amount_24h",
    "txn_amount_vs_history:amount_to_avg_24h_ratio",
]


TRAINING_PREVIEW = [
    "customer_id",
    "merchant_id",
    "event_timestamp",
    "amount",
    "is_fraud",
    "chargeback_rate_30d",
    "kyc_level",
    "txn_count_24h",
    "avg_amount_24h",
    "merchant_decline_rate_1h",
    "amount_to_avg_24h_ratio",
]


@dataclass
class DemoResult:
    tables: dict[str, int]
    online: pd.DataFrame
    training: pd.DataFrame
    stream_before: pd.DataFrame | None = None
    stream_after: pd.DataFrame | None = None
    stream: Any = None  # plugins.kafka_ingest.demo.StreamDemo, when the stream part ran
    notes: list[str] = field(default_factory=list)

    def frames(self):
        yield (
            "Delta tables written (rows)",
            pd.DataFrame({"table": list(self.tables), "rows": list(self.tables.values())}),
        )
        yield "Online features for 5 customers (feature service fraud_model_v2, Redis)", self.online
        yield (
            "Point-in-time training frame (Delta offline store on Spark), latest 10 rows",
            self.training[[c for c in TRAINING_PREVIEW if c in self.training.columns]].tail(10),
        )
        if self.stream_after is not None:
            yield "Stream-fed features before the Kafka stream", self.stream_before
            yield "... and after (same customers, read online)", self.stream_after

    def to_json(self) -> dict:
        def rows(df):
            return None if df is None else df.astype(object).where(df.notna(), None).to_dict(orient="records")

        return {
            "tables": self.tables,
            "online": rows(self.online),
            "training_rows": len(self.training),
            "training_head": rows(self.training.head(10).astype(str)),
            "stream_before": rows(self.stream_before),
            "stream_after": rows(self.stream_after),
            "stream": None
            if self.stream is None
            else {"produced": self.stream.produced, **self.stream.stats.to_dict()},
            "notes": self.notes,
        }


def _online(
    platform: Platform, customers: list[int], merchants: list[int], amounts: list[float]
) -> pd.DataFrame:
    rows = [
        {"customer_id": c, "merchant_id": m, "amount": a}
        for c, m, a in zip(customers, merchants, amounts, strict=True)
    ]
    resp = platform.store.get_online_features(features=ONLINE_FEATURES, entity_rows=rows).to_df()
    return resp


def run_demo(
    repo: str | None = None,
    env: str = "dev",
    customers: int = 2000,
    merchants: int = 200,
    days: int = 14,
    seed: int = 7,
    stream_seconds: float = 10.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    steps = 6
    tick = progress or (lambda *_: None)
    platform = Platform(repo, env=env)

    tick("generate synthetic payments", 0, steps)
    data = datagen.generate(seed=seed, customers=customers, merchants=merchants, days=days)
    tables = datagen.write_tables(data, platform.repo_path / "data")

    tick("fs apply", 1, steps)
    platform.apply()

    tick(f"fs materialize (all {days} days, one chunk per view)", 2, steps)
    end = datagen.default_end() + timedelta(seconds=1)
    # One chunk per view: profiles are months old but still within their TTL, so they must be loaded too.
    platform.materialize(end - timedelta(days=days), end, chunk=timedelta(days=days))

    tick("online read", 3, steps)
    top = data.payments["customer_id"].value_counts().index[:5].tolist()
    merchants_for = data.payments.groupby("customer_id")["merchant_id"].last()
    chosen_merchants = [int(merchants_for[c]) for c in top]
    online = _online(platform, top, chosen_merchants, [120.0, 35.5, 980.0, 15.0, 250.0])

    tick("point-in-time training frame", 4, steps)
    labels = data.payments.sample(n=min(2000, len(data.payments)), random_state=seed)
    entity_df = pd.DataFrame(
        {
            "customer_id": labels["customer_id"].to_numpy(),
            "merchant_id": labels["merchant_id"].to_numpy(),
            "amount": labels["amount"].to_numpy(),
            "event_timestamp": labels["event_timestamp"].to_numpy(),
            "is_fraud": labels["chargeback"].to_numpy(),
        }
    ).sort_values("event_timestamp", ignore_index=True)
    feature_service = platform.store.get_feature_service("fraud_model_v2")
    training = platform.store.get_historical_features(entity_df=entity_df, features=feature_service).to_df()

    result = DemoResult(tables=tables, online=online, training=training)
    result.notes.append(f"Training frame: {len(training)} rows x {training.shape[1]} columns.")

    tick("Kafka stream", 5, steps)
    if stream_seconds > 0:
        _stream_part(platform, data, top, chosen_merchants, stream_seconds, result)
    tick("done", steps, steps)
    return result


def _stream_part(platform, data, customers, merchants, seconds, result: DemoResult) -> None:
    from fs_platform.plugins.kafka_ingest.demo import stream_demo

    amounts = [120.0, 35.5, 980.0, 15.0, 250.0]
    result.stream_before = _online(platform, customers, merchants, amounts)
    result.stream = stream_demo(platform, data, customers, seconds)
    result.stream_after = _online(platform, customers, merchants, amounts)
    result.notes.append(result.stream.summary())
