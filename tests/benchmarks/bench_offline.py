"""Benchmark: Delta offline store (embedded Sail) vs Feast's file store vs a hand-written DuckDB ASOF JOIN.

    .venv/bin/python tests/benchmarks/bench_offline.py [--quick] [--no-write] [--repeat N]

Same generated data for all three: 3 feature views (4 features each) over one entity key, feature
rows split evenly across the views over 30 days, with about one row per key per view per day (the
number of keys scales with the feature rows) so that with the 7-day TTL nearly every entity row finds
a value in every view -- Feast's file store drops entity rows that miss in any view, and the row and
non-null counts of the three results are checked against each other. Entity rows are spread over the
last 20 of the 30 days. Each measurement runs in its own process (peak RSS is that process's), after
a warm-up, and reports wall time of ``get_historical_features(...).to_arrow()`` (or the DuckDB query
to Arrow). The stores take turns, ``--repeat`` times each (default 3), and each keeps its best time:
on a shared machine a burst of other work inflates single runs, and alternating gives every store the
same chances. Results go to the ``offline`` section of docs/benchmarks.md with ratios to the
baselines measured in the same run, and every run's time is listed there.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks import report  # noqa: E402

VIEWS = ("v0", "v1", "v2")
FEATURES = ("f0", "f1", "f2", "f3")
ROWS_PER_KEY = 30  # per view over the 30 days: ~1 a day, so a 7-day TTL almost always finds one
END = datetime(2024, 6, 1, tzinfo=UTC)
TTL = timedelta(days=7)
FILE_STORE_MAX_FEATURE_ROWS = 1_000_000  # Feast's dask store needs minutes and tens of GB beyond this


def _ts(rng, n: int, days: int) -> pa.Array:
    seconds = rng.integers(0, days * 86400, n)
    micros = (int((END - timedelta(days=days)).timestamp()) + seconds) * 1_000_000
    return pa.array(micros, pa.timestamp("us", tz="UTC"))


def generate(folder: Path, entity_rows: int, feature_rows: int) -> None:
    from deltalake import write_deltalake

    rng = np.random.default_rng(42)
    per_view = feature_rows // len(VIEWS)
    keys = max(per_view // ROWS_PER_KEY, 1)
    for view in VIEWS:
        ts = _ts(rng, per_view, 30)
        table = pa.table(
            {
                "customer_id": rng.integers(0, keys, per_view),
                "event_timestamp": ts,
                "created": ts,
                **{f"{view}_{f}": rng.random(per_view) for f in FEATURES},
            }
        )
        write_deltalake(str(folder / f"{view}_delta"), table, mode="overwrite")
        pq.write_table(table, folder / f"{view}.parquet")
    entity = pa.table(
        {"customer_id": rng.integers(0, keys, entity_rows), "event_timestamp": _ts(rng, entity_rows, 20)}
    )
    pq.write_table(entity, folder / "entity.parquet")


def _views(source_for):
    from feast import Entity, FeatureView, Field
    from feast.types import Float64, Int64
    from feast.value_type import ValueType

    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    views = [
        FeatureView(
            name=view,
            entities=[customer],
            ttl=TTL,
            schema=[
                Field(name="customer_id", dtype=Int64),
                *[Field(name=f"{view}_{f}", dtype=Float64) for f in FEATURES],
            ],
            source=source_for(view),
        )
        for view in VIEWS
    ]
    refs = [f"{v}:{v}_{f}" for v in VIEWS for f in FEATURES]
    return customer, views, refs


def _store(folder: Path, offline: dict | object, source_for):
    from feast import FeatureStore
    from feast.repo_config import RegistryConfig, RepoConfig

    repo = Path(tempfile.mkdtemp(dir=folder))
    config = RepoConfig(
        project="bench",
        provider="local",
        registry=RegistryConfig(path=str(repo / "registry.db")),
        offline_store=offline,
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        repo_path=repo,
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    customer, views, refs = _views(source_for)
    store.apply([customer, *views])
    return store, refs


def run_delta(folder: Path) -> int:
    from fs_platform.plugins.delta import DeltaSource
    from fs_platform.plugins.delta.engine import get_spark
    from fs_platform.plugins.delta.offline_store import DeltaOfflineStoreConfig

    store, refs = _store(
        folder,
        DeltaOfflineStoreConfig(),
        lambda v: DeltaSource(
            name=v,
            path=str(folder / f"{v}_delta"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
    )
    get_spark(store.config).range(1).count()  # warm-up: engine start is not part of the query
    entity = pq.read_table(folder / "entity.parquet").to_pandas()
    return _timed(lambda: store.get_historical_features(entity, refs).to_arrow())


def run_sail_floor(folder: Path) -> int:
    """Not a retrieval: per view, read the Delta table, sort it by key and time and take one
    ``lead()`` of the time (over the same hash groups as the store), counting the result. Every
    window formulation of the point-in-time join on Spark needs at least this (the store adds the
    tie-break, a second lead, the join and the result), so it bounds what any of them can reach."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from fs_platform.plugins.delta.engine import get_spark

    spark = get_spark(None)
    spark.range(1).count()

    def floor() -> pa.Table:
        counts = []
        for v in VIEWS:
            rows = spark.read.format("delta").load(str(folder / f"{v}_delta"))
            window = Window.partitionBy(F.pmod(F.xxhash64("customer_id"), F.lit(64))).orderBy(
                "customer_id", "event_timestamp"
            )
            nxt = rows.select(F.lead("event_timestamp").over(window).alias("n"), f"{v}_f0")
            counts.append(nxt.agg(F.count("n")).collect()[0][0])
        return pa.table({"next": counts})

    return _timed(floor)


def run_file(folder: Path) -> int:
    from feast import FileSource

    store, refs = _store(
        folder,
        {"type": "file"},
        lambda v: FileSource(
            name=v,
            path=str(folder / f"{v}.parquet"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
    )
    entity = pq.read_table(folder / "entity.parquet").to_pandas()
    return _timed(lambda: store.get_historical_features(entity, refs).to_arrow())


def run_duckdb(folder: Path) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    select, joins = ["e.*"], []
    for i, v in enumerate(VIEWS):
        cols = ", ".join(f"{v}_{f}" for f in FEATURES)
        select += [
            f"CASE WHEN t{i}.event_timestamp >= e.event_timestamp - INTERVAL {TTL.days} DAY THEN "
            f"t{i}.{v}_{f} END AS {v}_{f}"
            for f in FEATURES
        ]
        joins.append(
            f"ASOF LEFT JOIN (SELECT customer_id, event_timestamp, {cols} FROM '{folder / f'{v}.parquet'}') "
            f"t{i} ON e.customer_id = t{i}.customer_id AND e.event_timestamp >= t{i}.event_timestamp"
        )
    sql = f"SELECT {', '.join(select)} FROM '{folder / 'entity.parquet'}' e " + " ".join(joins)
    con.execute("SELECT 1").fetchall()
    return _timed(lambda: con.sql(sql).to_arrow_table())


def _timed(fn) -> pa.Table:
    start = time.perf_counter()
    table = fn()
    _timed.result = (time.perf_counter() - start, table)  # type: ignore[attr-defined]
    return table


def _child(name: str, folder: str, queue) -> None:
    runner = {"delta": run_delta, "file": run_file, "duckdb": run_duckdb, "floor": run_sail_floor}[name]
    runner(Path(folder))
    seconds, table = _timed.result  # type: ignore[attr-defined]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    features = [f"{v}_{f}" for v in VIEWS for f in FEATURES if f"{v}_{f}" in table.column_names]
    found = sum(table.num_rows - table[c].null_count for c in features)
    queue.put((seconds, table.num_rows, peak_mb, found))


def measure(name: str, folder: Path) -> tuple[float, int, float, int]:
    """(seconds, result rows, peak RSS MB, non-null feature values) of one store on ``folder``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, str(folder), queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{name} benchmark process failed with exit code {proc.exitcode}")
    return queue.get()


def best_of(names: list[str], folder: Path, repeats: int) -> tuple[dict, dict]:
    """Run every store ``repeats`` times, alternating, each run in a fresh process.

    Returns ({name: (best seconds, rows, max peak MB, non-null values)}, {name: [seconds of every run]}).
    The best (minimum) time of each store is what a shared, noisy machine least distorts; alternating
    gives every store the same chances. Row and non-null counts must agree across a store's runs.
    """
    runs: dict[str, list] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            runs[name].append(measure(name, folder))
    best = {}
    for name, results in runs.items():
        assert len({(r[1], r[3]) for r in results}) == 1, f"{name} runs disagree: {results}"
        best[name] = (min(r[0] for r in results), results[0][1], max(r[2] for r in results), results[0][3])
    return best, {name: [r[0] for r in results] for name, results in runs.items()}


def write_section(lines: list[str]) -> None:
    report.write_section("offline", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per store and size, best kept (default 3; 1 with --quick)",
    )
    args = parser.parse_args()
    repeats = args.repeat or (1 if args.quick else 3)
    sizes = (
        [(10_000, 100_000)]
        if args.quick
        else [(100_000, 1_000_000), (1_000_000, 10_000_000), (1_000_000, 20_000_000)]
    )

    rows_out: list[str] = []
    spread: list[str] = []
    for entity_rows, feature_rows in sizes:
        folder = Path(tempfile.mkdtemp(prefix="bench-offline-"))
        try:
            generate(folder, entity_rows, feature_rows)
            names = ["delta", "duckdb", "floor"] + (
                ["file"] if feature_rows <= FILE_STORE_MAX_FEATURE_ROWS else []
            )
            results, all_runs = best_of(names, folder, repeats)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        # Same answers: every entity row kept, and as many non-null feature values as DuckDB finds.
        assert results["delta"][1] == results["duckdb"][1] == entity_rows, f"row counts differ: {results}"
        assert results["delta"][3] == results["duckdb"][3], f"non-null feature counts differ: {results}"
        if "file" in results:  # drops entity rows that miss in any view: must stay a small minority
            assert results["file"][1] >= 0.95 * entity_rows, f"file store kept too few rows: {results}"
        delta_s = results["delta"][0]
        file_cell = ratio_file = "not run"
        if "file" in results:
            file_cell = (
                f"{results['file'][0]:.2f} s / {results['file'][2]:.0f} MB ({results['file'][1]:,} rows)"
            )
            ratio_file = f"{results['file'][0] / delta_s:.1f}x faster"
        row = (
            f"| {entity_rows:,} | {feature_rows:,} | {delta_s:.2f} s / {results['delta'][2]:.0f} MB "
            f"| {results['duckdb'][0]:.2f} s / {results['duckdb'][2]:.0f} MB | {file_cell} "
            f"| {delta_s / results['duckdb'][0]:.2f}x | {ratio_file} "
            f"| {results['floor'][0]:.2f} s ({results['floor'][0] / results['duckdb'][0]:.2f}x) |"
        )
        print(row, flush=True)
        rows_out.append(row)
        spread.append(
            f"- {entity_rows:,} x {feature_rows:,}: "
            + "; ".join(
                f"{name} " + " / ".join(f"{t:.2f}" for t in times) + " s" for name, times in all_runs.items()
            )
        )

    lines = [
        "## Offline store: point-in-time retrieval (bench_offline.py)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}; shared 2-core "
        "machine, other work running: compare the ratios, not the absolute times.",
        "3 feature views x 4 features, one int64 key (feature rows / 90 distinct: ~1 row per key per view "
        "per",
        "day over 30 days), TTL 7 days; feature rows are the total over the 3 views. Time =",
        "`get_historical_features(...).to_arrow()` after engine warm-up, best of "
        f"{repeats} run{'s' if repeats > 1 else ''} per store",
        "(stores alternate, each run in a fresh process; every run is listed below); memory = the largest "
        "peak",
        "RSS of those processes (for the Delta store it includes the embedded Sail engine). Checked in the "
        "run: Delta and",
        "DuckDB return every entity row and the same number of non-null feature values; Feast's file store",
        "drops entity rows that miss in any view (its row count is shown).",
        "",
        "| entity rows | feature rows | Delta store (Sail) | DuckDB ASOF JOIN | Feast file store | Delta / "
        "DuckDB | vs file store | Sail sort + lead floor (/ DuckDB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows_out,
        "",
        f"Feast's file (dask) store is only run up to {FILE_STORE_MAX_FEATURE_ROWS:,} feature rows.",
        "The floor is not a retrieval: per view, Sail reads the Delta table, sorts it by (key, time) over "
        "the",
        "store's 64 hash groups and takes one `lead()` of the time, then counts (`run_sail_floor`). Every",
        "window formulation of the join on Spark needs at least that much; the store adds the tie-break, the",
        "key `lead()`, the join and writing the result.",
        "",
        "Every run (seconds, in the order run):",
        "",
        *spread,
    ]
    if not args.no_write:
        write_section(lines)


if __name__ == "__main__":
    main()
