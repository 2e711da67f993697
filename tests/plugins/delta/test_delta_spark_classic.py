"""Conformance: the same point-in-time Spark code gives the same rows on classic Spark and on Sail.

Classic local Spark cannot read Delta here (no delta-spark JARs offline), so both engines read the
same parquet files; the join logic under test is identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fs_platform.plugins.delta import pit_join, retrieval
from tests.plugins.delta.test_delta_point_in_time import BASE, views

pytestmark = [pytest.mark.spark_classic, pytest.mark.slow]
HERE = Path(__file__).resolve().parent


def _write(path, df: pd.DataFrame) -> str:
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = pa.table(
        [c.cast(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(c.type) else c for c in table.columns],
        names=table.column_names,
    )
    pq.write_table(table, path)
    return str(path)


def _data(tmp_path):
    rng = np.random.default_rng(11)
    n = 400
    minute = lambda k: pd.to_datetime(BASE) + pd.to_timedelta(rng.integers(0, 240, k), unit="min")  # noqa: E731
    a = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 30, n),
            "ts": minute(n),
            "created": minute(n),
            "a_int": rng.integers(0, 100, n),
            "a_float": rng.random(n),
        }
    ).drop_duplicates(["customer_id", "ts", "created"])
    b = pd.DataFrame(
        {
            "merchant_id": rng.integers(0, 10, n),
            "terminal": rng.choice(["x", "y"], n),
            "event_ts": minute(n),
            "created_at": minute(n),
            "b_string": [f"s{i}" for i in range(n)],
            "b_bool": rng.random(n) > 0.5,
        }
    ).drop_duplicates(["merchant_id", "terminal", "event_ts", "created_at"])
    entity = pd.DataFrame(
        {
            "label": range(200),
            "customer_id": rng.integers(0, 35, 200),
            "merchant_id": rng.integers(0, 12, 200),
            "terminal": rng.choice(["x", "y"], 200),
            "event_timestamp": minute(200),
        }
    )
    return {
        name: _write(tmp_path / f"{name}.parquet", df) for name, df in (("a", a), ("b", b), ("e", entity))
    }, entity


def _run(spark, paths, entity: pd.DataFrame) -> pd.DataFrame:
    va, vb = views(timedelta(minutes=30), None)
    plans = [
        retrieval.plan_view(va, ["a_int", "a_float"], False),
        retrieval.plan_view(vb, ["b_str", "b_bool"], False),
    ]
    frames = {"a": spark.read.parquet(paths["a"]), "b": spark.read.parquet(paths["b"])}
    ts = entity["event_timestamp"]
    out = pit_join.point_in_time_join(
        spark.read.parquet(paths["e"]),
        "event_timestamp",
        plans,
        frames,
        (ts.min().to_pydatetime(), ts.max().to_pydatetime()),
        filter_by_created_timestamp=False,
    )
    return (
        out.toPandas()
        .sort_values("label")
        .reset_index(drop=True)[["label", "a_int", "a_float", "b_str", "b_bool"]]
    )


def _classic_main(data_dir: str, out: str) -> None:
    """Child process: run the join on classic local Spark and write the rows to ``out``."""
    from pyspark.sql import SparkSession

    paths = {name: str(Path(data_dir) / f"{name}.parquet") for name in ("a", "b", "e")}
    entity = pd.read_parquet(paths["e"])
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    _run(spark, paths, entity).to_parquet(out)
    spark.stop()


def test_classic_spark_and_sail_agree(tmp_path, engine):
    paths, entity = _data(tmp_path)
    out = tmp_path / "classic.parquet"
    # A separate interpreter: the JVM gateway does not start reliably next to a live gRPC (Connect)
    # client, and PySpark switches Connect/classic per process.
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parents[2]), env.get("PYTHONPATH", "")])
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import {Path(__file__).stem} as m; m._classic_main({str(tmp_path)!r}, {str(out)!r})",
        ],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    on_classic = pd.read_parquet(out)
    on_sail = _run(engine.spark, paths, entity)
    assert on_classic["a_int"].notna().sum() > 20  # the data actually exercises matches
    pd.testing.assert_frame_equal(on_classic, on_sail, check_dtype=False)


def _aggregation_data(tmp_path) -> dict[str, str]:
    """Raw events (every kind of input the test spec reads) and entity rows, as parquet."""
    from tests.plugins.delta.test_aggregation_retrieval import _events

    rng = np.random.default_rng(12)
    n = 600
    amount = np.where(rng.random(n) < 0.1, np.nan, np.round(rng.lognormal(3, 1, n), 2))
    rows = [
        (int(k), pd.Timestamp(BASE) + pd.Timedelta(seconds=int(s)), float(a), bool(a > 20), str(c))
        for k, s, a, c in zip(
            rng.integers(1, 12, n),
            rng.integers(0, 3 * 86400, n),
            amount,
            rng.choice(["web", "pos", "test"], n),
            strict=True,
        )
    ]
    pq.write_table(_events(rows), tmp_path / "events.parquet")
    entity = pd.DataFrame(
        {
            "label": range(150),
            "customer_id": rng.integers(1, 14, 150),
            "event_timestamp": pd.Timestamp(BASE) + pd.to_timedelta(rng.integers(0, 3 * 86400, 150), "s"),
        }
    )
    return {"events": str(tmp_path / "events.parquet"), "entity": _write(tmp_path / "entity.parquet", entity)}


def _aggregate(spark, paths: dict[str, str]) -> pd.DataFrame:
    from fs_platform.plugins.delta.aggregation_as_of import as_of
    from tests.plugins.delta.test_aggregation_retrieval import SPEC

    outputs = {f.name: f.name for f in SPEC.features}
    frame = as_of(
        spark.read.parquet(paths["entity"]),
        "event_timestamp",
        ["customer_id"],
        SPEC,
        spark.read.parquet(paths["events"]),
        outputs,
        partitions=3,
    )
    return frame.toPandas().sort_values("label").reset_index(drop=True)[["label", *outputs]]


def _classic_aggregate_main(data_dir: str, out: str) -> None:
    """Child process: aggregation values on classic local Spark (Python workers run the kernel)."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    paths = {
        "events": str(Path(data_dir) / "events.parquet"),
        "entity": str(Path(data_dir) / "entity.parquet"),
    }
    _aggregate(spark, paths).to_parquet(out)
    spark.stop()


def test_aggregation_values_agree_on_classic_spark_and_sail(tmp_path, engine):
    """The aggregation kernel runs in classic Spark's Python workers too (shipped by value)."""
    paths = _aggregation_data(tmp_path)
    out = tmp_path / "classic_aggregates.parquet"
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parents[2]), env.get("PYTHONPATH", "")])
    env["PYSPARK_PYTHON"] = sys.executable  # workers need numpy and pyarrow
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import {Path(__file__).stem} as m; m._classic_aggregate_main({str(tmp_path)!r}, {str(out)!r})",
        ],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    on_classic = pd.read_parquet(out)
    on_sail = _aggregate(engine.spark, paths)
    assert on_sail["n_1h"].gt(0).sum() > 50  # the data actually exercises the windows
    pd.testing.assert_frame_equal(on_classic, on_sail, check_dtype=False, rtol=1e-12)
