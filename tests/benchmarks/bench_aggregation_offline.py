"""Benchmark: aggregation view retrieval (training) on the Delta store (embedded Sail) vs hand-written DuckDB.

    .venv/bin/python tests/benchmarks/bench_aggregation_offline.py [--small] [--no-write] [--repeat N]

One aggregation view: count of events, sum and mean of ``amount`` over 10m, 1h and 24h (default tiles
1m, 5m, 1h), as of every entity row. Raw events over 30 days, keys skewed as in fs/datagen.py: half the
events and entity rows draw their customer from ``zipf(1.6)`` (a few customers have millions of events),
half uniformly from all customers (a long tail with a few events each). Entity rows are spread over the
last 20 days. Default: 1M entity rows x 10M events (``--small``: 100k x 1M).

Contenders, each in its own process after a warm-up (engine start, one tiny query), alternating,
``--repeat`` times (default 3), best time kept:

* ``delta``: ``get_historical_features(entity_df, features).to_arrow()`` through Feast (plugins/delta);
* ``duckdb``: hand-written DuckDB SQL giving the same values: per key, running count / sum over the
  events (one window), read with ``ASOF JOIN`` at the request time and just before the window's first
  tile, and subtracted (the fastest DuckDB formulation found; it only works for count/sum/mean);
* ``duckdb_tiles``: DuckDB with the tile formulation (tiles grouped, a ``RANGE n PRECEDING`` window over
  tiles for the tail, a window per (key, tile) for the head, joined back): general, slower.

All three read only the events that can count (from 24h + 1h before the first entity row to the last
one), as the Delta store prunes them. The results are compared in the run: same rows, counts equal,
sums and means within 1e-6 (DuckDB's running-sum differences lose a few digits on long histories).
Results go to the ``aggregation_offline`` section of docs/benchmarks.md.
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

END = datetime(2024, 6, 1, tzinfo=UTC)
DAYS = 30
WINDOWS = (("10m", 600, 60), ("1h", 3600, 300), ("24h", 86400, 3600))  # label, span s, tile s (defaults)
EVENTS_PER_CUSTOMER = 20  # customers = events / 20 (the uniform half gives ~10 events each)


def _customers(rng, n: int, customers: int) -> np.ndarray:
    zipf = rng.zipf(1.6, n) % customers + 1
    uniform = rng.integers(1, customers + 1, n)
    return np.where(rng.random(n) < 0.5, zipf, uniform).astype("int64")


def generate(folder: Path, entity_rows: int, events: int) -> dict:
    from deltalake import write_deltalake

    rng = np.random.default_rng(42)
    customers = max(events // EVENTS_PER_CUSTOMER, 100)
    start = int((END - timedelta(days=DAYS)).timestamp()) * 1_000_000
    micros = start + rng.integers(0, DAYS * 86400 * 1_000_000, events)
    table = pa.table(
        {
            "customer_id": _customers(rng, events, customers),
            "event_timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
            "amount": np.round(rng.lognormal(3.2, 1.0, events), 2),
        }
    )
    write_deltalake(str(folder / "events_delta"), table, mode="overwrite")
    pq.write_table(table, folder / "events.parquet")
    recent = int((END - timedelta(days=20)).timestamp()) * 1_000_000
    entity = pa.table(
        {
            "customer_id": _customers(rng, entity_rows, customers),
            "event_timestamp": pa.array(
                recent + rng.integers(0, 20 * 86400 * 1_000_000, entity_rows), pa.timestamp("us", tz="UTC")
            ),
            "row": np.arange(entity_rows, dtype="int64"),
        }
    )
    pq.write_table(entity, folder / "entity.parquet")
    keys, counts = np.unique(table["customer_id"].to_numpy(), return_counts=True)
    return {"customers": len(keys), "top": sorted(counts.tolist(), reverse=True)[:3]}


def _features() -> list[str]:
    return [
        f"{kind}_{label}" for label, _, _ in WINDOWS for kind in ("txn_count", "txn_amount", "avg_amount")
    ]


def run_delta(folder: Path) -> pa.Table:
    from feast import Entity, FeatureStore
    from feast.repo_config import RegistryConfig, RepoConfig
    from feast.value_type import ValueType

    from fs_platform.aggregation import Aggregation, aggregation_view
    from fs_platform.plugins.delta import DeltaSource
    from fs_platform.plugins.delta.engine import get_spark
    from fs_platform.plugins.delta.offline_store import DeltaOfflineStoreConfig

    repo = Path(tempfile.mkdtemp(dir=folder))
    config = RepoConfig(
        project="bench",
        provider="local",
        registry=RegistryConfig(path=str(repo / "registry.db")),
        offline_store=DeltaOfflineStoreConfig(),
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        repo_path=repo,
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    labels = [label for label, _, _ in WINDOWS]
    view = aggregation_view(
        name="txn",
        entities=[customer],
        source=DeltaSource(
            name="events", path=str(folder / "events_delta"), timestamp_field="event_timestamp"
        ),
        aggregations=[
            Aggregation("*", "count", labels, name="txn_count"),
            Aggregation("amount", "sum", labels, name="txn_amount"),
            Aggregation("amount", "mean", labels, name="avg_amount"),
        ],
        online=False,
    )
    store.apply([customer, view])
    spark = get_spark(store.config)
    # Warm-up: engine start and the Python side of mapInArrow, not the data.
    spark.range(4).mapInArrow(lambda batches: batches, "id long").count()
    entity = pq.read_table(folder / "entity.parquet").to_pandas()
    refs = [f"txn:{f}" for f in _features()]
    return _timed(lambda: store.get_historical_features(entity, refs).to_arrow())


def _duckdb(folder: Path):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SELECT 1").fetchall()
    return con


def _pruned(folder: Path) -> str:
    """Events that can count (the Delta store prunes the same way): from the longest window plus its
    tile before the first entity row, up to the last one."""
    _, span, tile = WINDOWS[-1]
    entity = f"'{folder / 'entity.parquet'}'"
    return (
        f"event_timestamp >= (SELECT min(event_timestamp) FROM {entity}) - INTERVAL {span + tile} SECOND "
        f"AND event_timestamp <= (SELECT max(event_timestamp) FROM {entity})"
    )


def run_duckdb(folder: Path) -> pa.Table:
    """Running count/sum per key, ASOF-joined at t and just before the window's first tile."""
    con = _duckdb(folder)
    starts = ", ".join(
        f"(us // {g * 10**6} - {w // g}) * {g * 10**6} - 1 AS b_{label}" for label, w, g in WINDOWS
    )
    joins = ["ASOF LEFT JOIN running a ON r.customer_id = a.customer_id AND r.us >= a.us"]
    select = ["r.row"]
    for label, _, _ in WINDOWS:
        b = f"b{label}"
        joins.append(
            f"ASOF LEFT JOIN running {b} ON r.customer_id = {b}.customer_id AND r.b_{label} >= {b}.us"
        )
        count = f"coalesce(a.c, 0) - coalesce({b}.c, 0)"
        n = f"coalesce(a.n, 0) - coalesce({b}.n, 0)"
        total = f"coalesce(a.s, 0) - coalesce({b}.s, 0)"
        select += [
            f"{count} AS txn_count_{label}",
            f"{total} AS txn_amount_{label}",
            f"({total}) / nullif({n}, 0) AS avg_amount_{label}",
        ]
    sql = f"""
        WITH running AS (
            SELECT customer_id, us, count(*) OVER w AS c, count(amount) OVER w AS n, sum(amount) OVER w AS s
            FROM (SELECT customer_id, epoch_us(event_timestamp) AS us, amount
                  FROM '{folder / "events.parquet"}'
                  WHERE {_pruned(folder)})
            WINDOW w AS (PARTITION BY customer_id ORDER BY us
                         RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        ),
        r AS (SELECT row, customer_id, epoch_us(event_timestamp) AS us, {starts}
              FROM '{folder / "entity.parquet"}')
        SELECT {", ".join(select)} FROM r {" ".join(joins)}
    """
    return _timed(lambda: con.sql(sql).to_arrow_table())


def run_duckdb_tiles(folder: Path) -> pa.Table:
    """Tiles per (key, tile); tail = RANGE n PRECEDING over tiles; head = a window per (key, tile)."""
    con = _duckdb(folder)
    ctes = [
        "ev AS (SELECT customer_id, epoch_us(event_timestamp) AS us, amount FROM "
        f"'{folder / 'events.parquet'}' WHERE {_pruned(folder)})",
        "rq AS (SELECT DISTINCT customer_id, epoch_us(event_timestamp) AS us FROM "
        f"'{folder / 'entity.parquet'}')",
    ]
    joins, select = [], ["e.row"]
    for label, w, g in WINDOWS:
        size, n = g * 10**6, w // g
        ctes.append(f"""tail_{label} AS (
            SELECT customer_id, tile, sum(ne) OVER w AS ne, sum(n) OVER w AS n, sum(s) OVER w AS s, r FROM (
                SELECT customer_id, us // {size} AS tile, count(*) AS ne, count(amount) AS n,
                       sum(amount) AS s, false AS r FROM ev GROUP BY ALL
                UNION ALL SELECT DISTINCT customer_id, us // {size}, NULL, NULL, NULL, true FROM rq)
            WINDOW w AS (PARTITION BY customer_id ORDER BY tile
                         RANGE BETWEEN {n} PRECEDING AND 1 PRECEDING))""")
        ctes.append(f"""head_{label} AS (
            SELECT customer_id, us, sum(one) OVER w AS ne, count(amount) OVER w AS n,
                   sum(amount) OVER w AS s, r
            FROM (SELECT customer_id, us, amount, 1 AS one, false AS r FROM ev
                  UNION ALL SELECT customer_id, us, NULL, NULL, true FROM rq)
            WINDOW w AS (PARTITION BY customer_id, us // {size} ORDER BY us
                         RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))""")
        joins.append(
            f"LEFT JOIN (SELECT * FROM tail_{label} WHERE r) t{label} "
            f"ON t{label}.customer_id = e.customer_id AND t{label}.tile = e.us // {size}"
        )
        joins.append(
            f"LEFT JOIN (SELECT * FROM head_{label} WHERE r) h{label} "
            f"ON h{label}.customer_id = e.customer_id AND h{label}.us = e.us"
        )
        n_ = f"coalesce(t{label}.n, 0) + coalesce(h{label}.n, 0)"
        total = f"coalesce(t{label}.s, 0) + coalesce(h{label}.s, 0)"
        select += [
            f"coalesce(t{label}.ne, 0) + coalesce(h{label}.ne, 0) AS txn_count_{label}",
            f"{total} AS txn_amount_{label}",
            f"({total}) / nullif({n_}, 0) AS avg_amount_{label}",
        ]
    entity = (
        f"(SELECT row, customer_id, epoch_us(event_timestamp) AS us FROM '{folder / 'entity.parquet'}') e"
    )
    sql = f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM {entity} {' '.join(joins)}"
    return _timed(lambda: con.sql(sql).to_arrow_table())


def _timed(fn) -> pa.Table:
    start = time.perf_counter()
    table = fn()
    _timed.result = (time.perf_counter() - start, table)  # type: ignore[attr-defined]
    return table


RUNNERS = {"delta": run_delta, "duckdb": run_duckdb, "duckdb_tiles": run_duckdb_tiles}


def _child(name: str, folder: str, queue) -> None:
    RUNNERS[name](Path(folder))
    seconds, table = _timed.result  # type: ignore[attr-defined]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if "row" not in table.column_names:  # the store returns entity columns in entity order
        table = table.append_column("row", pa.array(np.arange(table.num_rows, dtype="int64")))
    pq.write_table(table.select(["row", *_features()]), Path(folder) / f"result_{name}.parquet")
    queue.put((seconds, table.num_rows, peak_mb))


def measure(name: str, folder: Path) -> tuple[float, int, float]:
    """(seconds, result rows, peak RSS MB) of one contender, in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, str(folder), queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{name} benchmark process failed with exit code {proc.exitcode}")
    return queue.get()


def compare(folder: Path, names: list[str]) -> None:
    """Every contender's values equal delta's: counts exactly, sums and means within 1e-6."""
    base = pq.read_table(folder / "result_delta.parquet").sort_by("row")
    for name in names:
        other = pq.read_table(folder / f"result_{name}.parquet").sort_by("row")
        assert other.num_rows == base.num_rows, (name, other.num_rows, base.num_rows)
        for column in _features():
            a = base[column].to_numpy(zero_copy_only=False).astype("float64")
            b = other[column].to_numpy(zero_copy_only=False).astype("float64")
            if column.startswith("txn_count"):
                assert np.array_equal(a, b), (name, column)
            else:
                np.testing.assert_allclose(
                    b, a, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=f"{name} {column}"
                )


def write_section(lines: list[str]) -> None:
    report.write_section("aggregation_offline", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100k entity rows x 1M events (a quick run)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per contender, best kept (default 3; 1 with --small)"
    )
    args = parser.parse_args()
    repeats = args.repeat or (1 if args.small else 3)
    entity_rows, events = (100_000, 1_000_000) if args.small else (1_000_000, 10_000_000)
    names = list(RUNNERS)

    folder = Path(tempfile.mkdtemp(prefix="bench-agg-offline-"))
    try:
        shape = generate(folder, entity_rows, events)
        runs: dict[str, list] = {name: [] for name in names}
        for _ in range(repeats):
            for name in names:
                runs[name].append(measure(name, folder))
                print(name, f"{runs[name][-1][0]:.2f} s", flush=True)
        compare(folder, names[1:])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best = {name: (min(r[0] for r in results), max(r[2] for r in results)) for name, results in runs.items()}
    delta = best["delta"][0]
    row = (
        f"| {entity_rows:,} | {events:,} | {delta:.2f} s / {best['delta'][1]:.0f} MB "
        f"| {best['duckdb'][0]:.2f} s / {best['duckdb'][1]:.0f} MB | {delta / best['duckdb'][0]:.2f}x "
        f"| {best['duckdb_tiles'][0]:.2f} s / {best['duckdb_tiles'][1]:.0f} MB "
        f"| {delta / best['duckdb_tiles'][0]:.2f}x |"
    )
    print(row)
    lines = [
        "## Aggregation views: training retrieval (bench_aggregation_offline.py)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (--small)' if args.small else ''}; shared 2-core "
        "machine: compare the ratios, not the absolute times.",
        "One aggregation view: count, sum and mean of `amount` over 10m / 1h / 24h (tiles 1m / 5m / 1h) as "
        "of every",
        f"entity row. Events over {DAYS} days; half the events and entity rows take their customer from "
        "zipf(1.6)",
        f"(as fs/datagen.py), half uniformly ({shape['customers']:,} customers with events; the three "
        f"largest have {', '.join(f'{c:,}' for c in shape['top'])} events).",
        "Time = `get_historical_features(...).to_arrow()` through Feast after engine warm-up, or the DuckDB "
        "query to",
        f"Arrow; best of {repeats} run{'s' if repeats > 1 else ''}, contenders alternating, each run in a "
        "fresh process; memory = largest peak RSS (the Delta store's includes the embedded Sail engine). "
        "Checked in the run:",
        "same rows, equal counts, sums and means within 1e-6 of the Delta store's. All three read only the "
        "events that",
        "can count (from the longest window plus its tile before the first entity row to the last one).",
        "",
        "| entity rows | events | Delta store (Sail) | DuckDB running sums + ASOF | Delta / DuckDB "
        "| DuckDB tiles + windows | Delta / DuckDB tiles |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        row,
        "",
        "DuckDB running sums + ASOF: per key, running count and sum over the events (one window), `ASOF "
        "JOIN`ed at",
        "the request time and at the microsecond before the window's first tile, subtracted (count/sum/mean "
        "only).",
        "DuckDB tiles + windows: the tile formulation in SQL (tiles grouped; the tail a `RANGE n PRECEDING` "
        "window",
        "over tiles; the head a running window per (key, tile) over events and requests; joined back).",
        "",
        "Every run (seconds, in the order run):",
        "",
        *[
            f"- {name}: " + " / ".join(f"{r[0]:.2f}" for r in results) + " s"
            for name, results in runs.items()
        ],
    ]
    if not args.no_write:
        write_section(lines)


if __name__ == "__main__":
    main()
