"""State bytes per key and per event of the example repo's aggregation views (issue #13).

A week of synthetic payments (each customer pays ``--per-hour`` times an hour at one of ``--merchants``
merchants, 8 % declined) goes through the ingestor's tile write path (``write_events``: the same packed
blocks, Lua script and offset marks as ``fs ingest run``) into every aggregation view of
``feature_repo/``, applied unchanged to a private key prefix in the machine's Redis. Then, per view:
Redis ``MEMORY USAGE`` of the tiles key plus its offset-marks key (the whole state of one entity; nothing
else is kept anywhere), the tiles actually held against the ring's size, and bytes per event over the
view's longest window, beside the deleted hand-written transform's 80 bytes per event of the last 24 h.

Deterministic (bytes, not time): run it anywhere. ``python tests/benchmarks/bench_aggregation_state.py``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fs_platform import repo as repo_mod  # noqa: E402
from fs_platform.aggregation.spec import spec_of  # noqa: E402
from fs_platform.platform import Platform  # noqa: E402
from tests.benchmarks import report  # noqa: E402

OLD_BYTES_PER_EVENT = 80  # the deleted transform's retained state per event of the last 24 h (issue #13)
WEEK = timedelta(days=7)


def synthetic_payments(n: int, customers: int, merchants: int, start: datetime, end: datetime, seed: int):
    """``n`` payments at random times in ``[start, end)``, in time order (8 % declined)."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(int(start.timestamp() * 1e6), int(end.timestamp() * 1e6), n))
    return pa.table(
        {
            "payment_id": pa.array(np.arange(n), pa.int64()),
            "customer_id": pa.array(rng.integers(0, customers, n), pa.int64()),
            "merchant_id": pa.array(rng.integers(0, merchants, n), pa.int64()),
            "amount": pa.array(np.round(rng.lognormal(3.2, 1.0, n), 2)),
            "approved": pa.array(rng.random(n) > 0.08),
            "event_timestamp": pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def week_of_payments(customers: int, merchants: int, per_hour: float, end: datetime) -> pa.Table:
    n = int(customers * per_hour * 24 * 7)
    return synthetic_payments(n, customers, merchants, end - WEEK, end, seed=7)


def example_store(tmp: Path, url: str):
    """The example repo's entities, sources and aggregation views, applied to a private key prefix."""
    repo = tmp / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    cfg = yaml.safe_load((repo / "feature_store.yaml").read_text())
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    cfg["online_store"].update(url=url, key_prefix=prefix)
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(cfg))
    (repo / "data").mkdir()
    platform = Platform(repo)
    contents = repo_mod.parse(repo)
    views = [v for v in contents.feature_views if spec_of(v) is not None]
    platform.store.apply([*contents.entities, *contents.data_sources, *views])
    return platform, views, prefix


def measure(client: redis.Redis, prefix: str, view, events: pa.Table, end: datetime) -> dict:
    spec = spec_of(view)
    keys = [k for k in client.scan_iter(match=f"{prefix}:*:{view.name}", count=1000)]
    sample = keys[:: max(1, len(keys) // 300)]
    key_bytes = [client.memory_usage(k, samples=0) for k in sample]
    longest = max(spec.features, key=lambda f: f.window.span_us).window
    since = pa.scalar(end - timedelta(microseconds=longest.span_us), pa.timestamp("us", tz="UTC"))
    in_window = pc.sum(pc.greater(events["event_timestamp"], since)).as_py()
    key = spec.join_keys[0]
    entities = len(np.unique(events[key].to_numpy()))
    per_key = float(np.mean(key_bytes))
    events_per_key = in_window / entities
    return {
        "view": view.name,
        "key": key,
        "features": len(spec.features),
        "tiles": " / ".join(f"{_label(g.tile_us)} x {g.tiles + 1}" for g in spec.granularities),
        "strlen": int(np.mean([client.strlen(k) for k in sample])),
        "per_key": per_key,
        "longest": longest.label,
        "events_per_key": events_per_key,
        "per_event": per_key / events_per_key,
        "keys": len(keys),
    }


def _label(us: int) -> str:
    seconds = us // 1_000_000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--merchants", type=int, default=50)
    ap.add_argument("--per-hour", type=float, default=5.0, help="payments per customer per hour")
    args = ap.parse_args()
    end = datetime.now(UTC)
    events = week_of_payments(args.customers, args.merchants, args.per_hour, end)
    client = redis.Redis.from_url(args.url)
    with tempfile.TemporaryDirectory() as tmp:
        platform, views, prefix = example_store(Path(tmp), args.url)
        online = platform.store._get_provider().online_store
        try:
            batch = 20_000
            for start in range(0, events.num_rows, batch):
                part = events.slice(start, batch)
                offsets = np.arange(start, start + part.num_rows)
                online.write_events(
                    platform.store.config,
                    views,
                    part,
                    ["bench/0"] * part.num_rows,
                    offsets,
                    "event_timestamp",
                )
            rows = [measure(client, prefix, v, events, end) for v in views]
        finally:
            platform.store.teardown()
    lines = [
        "## Aggregation state per key (`tests/benchmarks/bench_aggregation_state.py`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine Redis on loopback. A week of "
        f"{events.num_rows:,} synthetic payments ({args.customers:,} customers paying "
        f"{args.per_hour:g} times an hour, "
        f"{args.merchants} merchants, 8 % declined) through the ingestor's tile write path into every "
        "aggregation view of `feature_repo/`. Bytes are Redis `MEMORY USAGE` of an entity's key (its tiles "
        "and its Kafka offset marks: the entity's whole state; the engine keeps nothing else), averaged "
        "over up to 300 keys; per event = per key / the entity's events in the view's longest window. "
        "Bytes do not depend on the event rate: a key holds its ring of tiles whatever the traffic.",
        "",
        "| view | key | features | tile size x ring | string bytes | bytes per key | "
        "longest window | events per key in it | bytes per event |",
        "|---|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['view']}` | {r['key']} | {r['features']} | {r['tiles']} | {r['strlen']:,} | "
            f"**{r['per_key']:,.0f}** | {r['longest']} | "
            f"{r['events_per_key']:,.0f} | {r['per_event']:.1f} |"
        )
    customer = sum(r["per_key"] for r in rows if r["key"] == "customer_id")
    old = OLD_BYTES_PER_EVENT * args.per_hour * 24
    lines += [
        "",
        f"All views of a customer together: {customer:,.0f} bytes per customer, whatever its rate; the "
        f"hand-written transform this replaced held {OLD_BYTES_PER_EVENT} bytes per event of the last 24 h "
        f"for its one view ({old:,.0f} bytes per customer at this rate, growing with it: ~32 GB per day of "
        "events at 5k events/s). The approximate distinct count's tiles carry a 256-register HyperLogLog "
        "each (256 bytes), which is why `customer_merchant_spread` is the largest per feature.",
    ]
    section = "\n".join(lines)
    report.write_section("aggregation-state", section)
    print(section)


if __name__ == "__main__":
    main()
