"""Aggregation views online: read latency vs a plain view, state bytes, tile write rate, restart recovery.

    .venv/bin/python tests/benchmarks/bench_aggregation_online.py [--quick] [--url redis://127.0.0.1:6379/9]

Same run, same Redis (the machine's 7.0 on loopback; a unique project, removed afterwards):
- a plain view of 7 features and the example repo's ``customer_txn_aggregates`` spec (7 features:
  count and sum over 10m/1h/24h, mean over 24h) for the same customers;
- one simulated day of payments (5 per customer per hour) applied to the tiles with the ingestor's write
  path (``write_events``: the Lua tile script, offsets deduplicated);
- reads through ``FastReader`` (1 and 100 entities), p50/p99, aggregation / plain (goal: within 2x);
- bytes per key (``MEMORY USAGE``), tiles held, and bytes per event, against the deleted hand-written
  transform, which kept every event of the last 24 h in memory (80 bytes per event, measured when it was
  filed);
- the tile write path's rate on a 6 h outage's backlog (a lower bound of the recovery time; the whole
  ingestor's recovery, measured beside the deleted transform's warm-up, is bench_ingest_recovery.py).
Writes the ``aggregation-online`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig
from feast.types import Float64, Int64
from feast.value_type import ValueType

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fs_platform.aggregation import Aggregation, aggregation_view, spec_of  # noqa: E402
from fs_platform.aggregation.tiles import Merger  # noqa: E402
from fs_platform.plugins.redis_store.fast_read import FastReader  # noqa: E402
from tests.benchmarks import report  # noqa: E402

OLD_BYTES_PER_EVENT = 80  # the deleted transform's retained state per event (issue #13)
OUTAGE_EVENTS = 6 * 3600 * 5_000


def build(tmp: Path, url: str, customers: int):
    now = datetime.now(UTC)
    entity = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    rows = pd.DataFrame(
        {
            "customer_id": np.arange(customers, dtype="int64"),
            **{f"f{i}": np.random.default_rng(i).random(customers) for i in range(7)},
            "event_timestamp": pd.Timestamp(now - timedelta(minutes=1)),
        }
    )
    rows.to_parquet(tmp / "plain.parquet")
    plain = FeatureView(
        name="plain",
        entities=[entity],
        ttl=timedelta(days=1),
        source=FileSource(
            name="plain_src", path=str(tmp / "plain.parquet"), timestamp_field="event_timestamp"
        ),
        schema=[
            Field(name="customer_id", dtype=Int64),
            *[Field(name=f"f{i}", dtype=Float64) for i in range(7)],
        ],
    )
    events_src = FileSource(
        name="events", path=str(tmp / "events.parquet"), timestamp_field="event_timestamp"
    )
    agg = aggregation_view(
        name="agg",
        entities=[entity],
        source=PushSource(name="events_push", batch_source=events_src),
        aggregations=[
            Aggregation("*", "count", ["10m", "1h", "24h"], name="txn_count"),
            Aggregation("amount", "sum", ["10m", "1h", "24h"], name="txn_amount"),
            Aggregation("amount", "mean", ["24h"], name="avg_amount"),
        ],
    )
    config = RepoConfig(
        project="bench" + uuid.uuid4().hex[:8],
        registry=str(tmp / "registry.db"),
        provider="local",
        entity_key_serialization_version=3,
        repo_path=str(tmp),
        online_store={"type": "fs_platform.plugins.redis_store.online_store.RedisOnlineStore", "url": url},
        offline_store={"type": "file"},
    )
    store = FeatureStore(config=config)
    store.apply([entity, plain, agg])
    return store, rows, now


def day_of_events(customers: int, per_hour: float, end: datetime) -> pa.Table:
    rng = np.random.default_rng(1)
    n = int(customers * per_hour * 24)
    start_us = int((end - timedelta(hours=24)).timestamp() * 1e6)
    times = np.sort(rng.integers(start_us, int(end.timestamp() * 1e6), n))
    return pa.table(
        {
            "customer_id": pa.array(rng.integers(0, customers, n), pa.int64()),
            "amount": pa.array(np.round(rng.lognormal(3.2, 1.0, n), 2)),
            "event_timestamp": pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def write_rate(online, config, view, events: pa.Table, batch: int = 2000) -> float:
    started = time.perf_counter()
    for start in range(0, events.num_rows, batch):
        part = events.slice(start, batch)
        online.write_events(
            config,
            view,
            part,
            ["bench/0"] * part.num_rows,
            np.arange(start, start + part.num_rows),
            "event_timestamp",
        )
    return events.num_rows / (time.perf_counter() - started)


def tiles_held(merger, blob: bytes) -> int:
    """Records of a stored ring that hold a tile (index set), i.e. the tiles actually kept."""
    data = np.frombuffer(blob, dtype="<f8")[merger.head :].reshape(merger.records, merger.width)
    return int(np.isfinite(data[:, 0]).sum())


def latencies(fn, budget_s: float) -> list[float]:
    out, deadline = [], time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(out) < 200:
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(xs, q):
    return float(np.percentile(xs, q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--url", default="redis://127.0.0.1:6379/9")
    args = ap.parse_args()
    customers = 500 if args.quick else 2000
    budget = 1.0 if args.quick else 4.0
    with tempfile.TemporaryDirectory() as tmp:
        store, rows, now = build(Path(tmp), args.url, customers)
        online = store._get_provider().online_store
        config = store.config
        try:
            plain, agg = store.get_feature_view("plain"), store.get_feature_view("agg")
            table = pa.Table.from_pandas(rows, preserve_index=False)
            online.write_arrow(config, plain, table, "event_timestamp")
            events = day_of_events(customers, 5.0, now)
            events_per_s = write_rate(online, config, agg, events)

            client = online.state(config).client
            keys = [k for k in client.scan_iter(match=f"fs:{config.project}:*:agg", count=1000)]
            sample = keys[:: max(1, len(keys) // 200)]
            bytes_per_key = float(np.mean([client.memory_usage(k, samples=0) for k in sample]))
            merger = Merger(spec_of(agg))
            tiles_per_key = float(np.mean([tiles_held(merger, client.get(k)) for k in sample]))
            events_per_key = events.num_rows / customers
            max_tiles = sum(g.tiles + 1 for g in spec_of(agg).granularities)
            old_bytes_per_key = OLD_BYTES_PER_EVENT * events_per_key

            reads = []
            fast_plain = FastReader(store, [f"plain:f{i}" for i in range(7)])
            fast_agg = FastReader(store, [f"agg:{f.name}" for f in agg.features])
            rng = np.random.default_rng(3)
            for n in (1, 100):
                ids = [rng.integers(0, customers, n).tolist() for _ in range(64)]
                it = iter(range(10**9))
                p = latencies(
                    lambda ids=ids, it=it: fast_plain.read({"customer_id": ids[next(it) % 64]}), budget
                )
                a = latencies(
                    lambda ids=ids, it=it: fast_agg.read({"customer_id": ids[next(it) % 64]}), budget
                )
                reads.append((n, p, a))

            # The backlog of a 6 h outage, replayed: a sample of it through the same write path.
            backlog = day_of_events(customers, 5.0 if args.quick else 20.0, now)
            backlog_rate = write_rate(online, config, agg, backlog)
        finally:
            store.teardown()
    recovery_s = OUTAGE_EVENTS / backlog_rate
    lines = [
        "## Aggregation views online (`tests/benchmarks/bench_aggregation_online.py`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}; machine Redis 7.0 "
        f"on loopback; {customers} customers; the example `customer_txn_aggregates` spec (7 features: count "
        "and sum over 10m/1h/24h with 1m/5m/1h tiles, mean over 24h) vs a plain view of 7 doubles; one "
        f"simulated day of {events.num_rows:,} payments applied through the ingestor's tile write path.",
        "",
        "| read (FastReader) | plain p50 / p99 ms | aggregation p50 / p99 ms | aggregation / plain p50 | "
        "p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for n, p, a in reads:
        lines.append(
            f"| {n} entit{'y' if n == 1 else 'ies'} | {pct(p, 50):.3f} / {pct(p, 99):.3f} | "
            f"{pct(a, 50):.3f} / {pct(a, 99):.3f} | {pct(a, 50) / pct(p, 50):.2f}x | "
            f"{pct(a, 99) / pct(p, 99):.2f}x |"
        )
    lines += [
        "",
        "| state | tiles (this) | hand-written transform (deleted) | ratio |",
        "|---|---:|---:|---:|",
        f"| bytes per customer key ({events_per_key:.0f} events in 24 h) | {bytes_per_key:,.0f} | "
        f"{old_bytes_per_key:,.0f} | {old_bytes_per_key / bytes_per_key:.1f}x less |",
        f"| bytes per event | {bytes_per_key / events_per_key:.1f} | {OLD_BYTES_PER_EVENT} | "
        f"{OLD_BYTES_PER_EVENT / (bytes_per_key / events_per_key):.1f}x less |",
        f"| tiles per key (max {max_tiles}) | {tiles_per_key:.1f} | - | - |",
        "",
        f"Tile write path (Lua, offsets deduplicated): {events_per_s:,.0f} events/s for the day; "
        f"{backlog_rate:,.0f} events/s on a denser backlog. State per key is bounded by tiles, not events: "
        "at 5k events/s the deleted transform held ~32 GB per day of events; the tiles hold the same bytes "
        "per key whatever the rate.",
        "",
        f"Tile write path alone on a 6 h outage's backlog at 5k events/s ({OUTAGE_EVENTS / 1e6:.0f}M "
        f"events): ~{recovery_s / 60:.0f} min at the rate measured here (an extrapolation, and a lower "
        "bound: it leaves out Kafka, decoding, the Delta appends and the live traffic that keeps arriving). "
        "The restart recovery of the whole ingestor, measured on a scaled outage beside the deleted "
        "transform's warm-up replay, is in the `ingest-recovery` section (`bench_ingest_recovery.py`).",
    ]
    section = "\n".join(lines)
    report.write_section("aggregation-online", section)
    print(section)


if __name__ == "__main__":
    main()
