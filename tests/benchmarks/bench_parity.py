"""Parity check benchmark: 100k entities x 3 views x 10 features, target < 60 s on this machine.

    .venv/bin/python tests/benchmarks/bench_parity.py [--quick] [--no-write]

Real servers: Delta tables read by embedded Sail, the machine's Redis at 127.0.0.1:6379 under a
unique key prefix (deleted afterwards). Baselines measured in the same run (timings drift on shared
machines, ratios do not): the floor for online reads is redis-py pipelined MGET of the same keys;
for the offline side, the offline store's own ``get_historical_features`` for the same entity rows.
Writes its section of docs/benchmarks.md between the parity markers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from deltalake import write_deltalake  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field  # noqa: E402
from feast.repo_config import RepoConfig  # noqa: E402
from feast.types import Bool, Float64, Int64, String  # noqa: E402
from feast.value_type import ValueType  # noqa: E402

from fs_platform.datagen import to_arrow  # noqa: E402
from fs_platform.parity import check  # noqa: E402
from fs_platform.plugins.delta import DeltaSource  # noqa: E402
from fs_platform.timeutil import utcnow  # noqa: E402
from tests.benchmarks import report  # noqa: E402

VIEWS = ("bench_a", "bench_b", "bench_c")
FEATURES = [(f"f_float_{i}", Float64) for i in range(4)] + [(f"f_int_{i}", Int64) for i in range(3)]
FEATURES += [("f_str_0", String), ("f_str_1", String), ("f_bool_0", Bool)]
MARKERS = ("<!-- parity:start -->", "<!-- parity:end -->")


def _table(rng, entities: int, now) -> pd.DataFrame:
    """Two rows per entity (an older and a newer event) within the last 12 hours."""
    n = entities * 2
    ids = np.tile(np.arange(1, entities + 1, dtype="int64"), 2)
    age = rng.uniform(0, 6 * 3600, n) + np.repeat([6 * 3600, 0], entities)
    ts = pd.Timestamp(now) - pd.to_timedelta(age, unit="s")
    frame = pd.DataFrame({"entity_id": ids})
    for name, dtype in FEATURES:
        if dtype is Float64:
            frame[name] = np.round(rng.lognormal(2, 1, n), 4)
        elif dtype is Int64:
            frame[name] = rng.integers(0, 10_000, n)
        elif dtype is String:
            frame[name] = rng.choice(["NG", "KE", "GH", "ZA", "EG"], n)
        else:
            frame[name] = rng.uniform(0, 1, n) > 0.5
    frame["event_timestamp"] = ts.floor("us")
    frame["created_at"] = frame["event_timestamp"] + pd.Timedelta(seconds=1)
    return frame


def _setup(work: Path, entities: int, prefix: str):
    now = utcnow()
    rng = np.random.default_rng(42)
    entity = Entity(name="bench_entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    views, tables = [], {}
    for name in VIEWS:
        tables[name] = _table(rng, entities, now)
        write_deltalake(str(work / name), to_arrow(tables[name]), mode="overwrite")
        source = DeltaSource(
            name=f"{name}_src",
            path=str(work / name),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_at",
        )
        views.append(
            FeatureView(
                name=name,
                entities=[entity],
                ttl=timedelta(days=1),
                source=source,
                online=True,
                schema=[Field(name=n, dtype=t) for n, t in FEATURES],
            )
        )
    config = RepoConfig(
        project="paritybench",
        provider="local",
        registry=str(work / "registry.db"),
        repo_path=str(work),
        offline_store={"type": "fs_platform.plugins.delta.offline_store.DeltaOfflineStore"},
        online_store={
            "type": "fs_platform.plugins.redis_store.online_store.RedisOnlineStore",
            "url": "redis://127.0.0.1:6379/0",
            "key_prefix": prefix,
        },
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    store.apply([entity, *views])
    online = store._get_provider().online_store
    t0 = time.perf_counter()
    for view in views:  # what pull-latest materialization writes: the newest row per entity
        latest = tables[view.name].sort_values("event_timestamp").drop_duplicates("entity_id", keep="last")
        online.write_arrow(config, view, to_arrow(latest))
    return store, views, time.perf_counter() - t0


def _baselines(store, views, entities: int, as_of) -> tuple[float, float]:
    """(raw pipelined MGET of the same keys, get_historical_features of the same entity rows)."""
    online = store._get_provider().online_store
    state = online.state(store.config)
    ids = list(range(1, entities + 1))
    t0 = time.perf_counter()
    for view in views:
        before, after = state.layout.view_affixes(view.name)
        keys = [f"{before}entity_id={i}{after}" for i in ids]
        pipe = state.client.pipeline(transaction=False)
        for start in range(0, len(keys), 10_000):
            pipe.mget(keys[start : start + 10_000])
        pipe.execute()
    mget = time.perf_counter() - t0
    entity_df = pd.DataFrame({"entity_id": ids, "event_timestamp": as_of})
    refs = [f"{v.name}:{n}" for v in views for n, _ in FEATURES]
    t0 = time.perf_counter()
    store.get_historical_features(entity_df, refs, full_feature_names=True).to_arrow()
    historical = time.perf_counter() - t0
    return mget, historical


def _write_section(text: str) -> None:
    report.write_section("parity", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k entities instead of 100k (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    entities = 10_000 if args.quick else 100_000
    work = Path(tempfile.mkdtemp(prefix="bench-parity-"))
    prefix = f"paritybench{uuid.uuid4().hex[:8]}"
    store = None
    try:
        store, views, load_s = _setup(work, entities, prefix)
        as_of = utcnow()
        check(store, sample=100, as_of=as_of)  # warm-up: Sail session, registry, codecs
        t0 = time.perf_counter()
        report = check(store, sample=entities, seed=1, as_of=as_of)
        wall = time.perf_counter() - t0
        mget, historical = _baselines(store, views, entities, as_of)
    finally:
        if store is not None:
            store._get_provider().online_store.teardown(store.config, [], [])
        shutil.rmtree(work, ignore_errors=True)
    t = report.timings
    compared = sum(v.total().compared for v in report.views)
    mismatched = sum(v.total().mismatched for v in report.views)
    offline = t.sampling_s + t.offline_s
    rows = [
        ("parity check, end to end", wall, "target < 60 s"),
        (
            "  online reads (fs Redis read path, ttl at as_of)",
            t.online_read_s,
            f"{t.online_read_s / mget:.1f}x raw MGET",
        ),
        (
            "  offline: sampling + expected values (Sail)",
            offline,
            f"{offline / historical:.2f}x get_historical_features",
        ),
        ("  compare + classify + report", t.compare_s, ""),
        ("baseline: redis-py pipelined MGET, same keys", mget, "floor"),
        ("baseline: get_historical_features, same entity rows", historical, "training read"),
    ]
    lines = [
        "## Parity check (`tests/benchmarks/bench_parity.py`)",
        "",
        f"{entities:,} entities x {len(VIEWS)} views x {len(FEATURES)} features = {compared:,} comparisons "
        f"({mismatched} mismatches), Delta tables of {2 * entities:,} rows per view, the machine's Redis "
        f"7.0, embedded Sail. Online load before the check (not timed in the check): {load_s:.1f} s."
        + (" **--quick run.**" if args.quick else ""),
        "",
        "| phase | seconds | ratio |",
        "|---|---:|---|",
        *[f"| {name} | {sec:.2f} | {ratio} |" for name, sec, ratio in rows],
        "",
        f"Split: online reads {t.online_read_s / wall:.0%} of the check, offline computation "
        f"{offline / wall:.0%}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        _write_section(text)
    return 0 if wall < 60 and mismatched == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
