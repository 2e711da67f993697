"""Which entity keys a check looks at: a reproducible sample of a view's recently active keys, or a
file of keys the on-call engineer already suspects.

The sample is ``ORDER BY xxhash64(keys, seed) LIMIT n`` over the distinct keys with an offline row
in ``[as_of - lookback, as_of]``, computed in Spark on one pinned Delta version: the same seed on
the same data gives the same keys, on a laptop or a cluster, without pulling every key home.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
from feast.type_map import feast_value_type_to_pa
from pyspark.sql import functions as F

from fs_platform.errors import ParityError
from fs_platform.parity.spark_io import SparkIO, ViewSource
from fs_platform.plugins.delta.retrieval import col

DEFAULT_LOOKBACK = timedelta(days=7)  # for views without a ttl


def default_lookback(src: ViewSource) -> timedelta:
    """Keys whose newest value may still be served: the view's ttl window."""
    return src.target.ttl or DEFAULT_LOOKBACK


def sample_keys(
    io: SparkIO, src: ViewSource, as_of: datetime, n: int, seed: int, lookback: timedelta
) -> pa.Table:
    plan = src.plan
    ts = col(plan.timestamp_field)
    recent = (
        io.read(src)
        .where(ts.isNotNull() & (ts <= F.lit(as_of)) & (ts >= F.lit(as_of - lookback)))
        .select(*[col(s).alias(k) for s, k in zip(plan.source_keys, plan.join_keys, strict=True)])
        .where(" AND ".join(f"`{k}` IS NOT NULL" for k in plan.join_keys))
        .distinct()
    )
    keys = [col(k) for k in plan.join_keys]
    ordered = recent.withColumn("__fs_h", F.xxhash64(*keys, F.lit(seed))).orderBy("__fs_h", *keys).limit(n)
    table = io.collect(ordered.drop("__fs_h"))
    return _ordered_keys(table, src)


def _ordered_keys(table: pa.Table, src: ViewSource) -> pa.Table:
    """Key columns in join-key order, cast to the entity types (the online store is strict about them)."""
    types = {c.name: feast_value_type_to_pa(c.dtype.to_value_type()) for c in src.target.view.entity_columns}
    return pa.table({k: table[k].cast(types[k]) for k in src.plan.join_keys})


def read_entities(path: str | Path) -> pa.Table:
    """Entity keys from CSV, parquet or JSON lines; one column per join key (extra columns are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ParityError(
            f"entities file {path} not found", hint="pass a CSV/parquet/JSON-lines file with join-key columns"
        )
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if path.suffix in (".json", ".jsonl", ".ndjson"):
            import pyarrow.json as pj

            return pj.read_json(path)
        import csv

        import pyarrow.csv as pc

        # Every CSV column as text: inferring types would turn a key "00123" into 123. Keys are
        # cast to the entity's type per view (``keys_for_view``).
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), [])
        return pc.read_csv(
            path, convert_options=pc.ConvertOptions(column_types={c: pa.string() for c in header})
        )
    except (pa.ArrowInvalid, OSError) as e:
        # The reader's message may quote file contents (entity keys can be PII): type only.
        raise ParityError(
            f"cannot read entities file {path}: {type(e).__name__}",
            hint="expected CSV with a header row, parquet, or JSON lines",
        ) from e


def keys_for_view(entities: pa.Table, src: ViewSource) -> pa.Table:
    """The distinct keys of one view from a user's entity table, in file order."""
    missing = [k for k in src.plan.join_keys if k not in entities.column_names]
    if missing:
        raise ParityError(
            f"entities lack join key column(s) {', '.join(missing)} needed by view {src.target.name!r}",
            hint=f"the file has {entities.column_names}",
        )
    import pyarrow.compute as pc

    table = entities.select(list(src.plan.join_keys))
    mask = None
    for k in src.plan.join_keys:
        valid = pc.is_valid(table[k])
        mask = valid if mask is None else pc.and_(mask, valid)
    table = table.filter(mask)
    try:
        table = _ordered_keys(table, src)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        # Arrow's message quotes the offending value (a key may be PII): name columns and types only.
        wanted = {
            c.name: str(feast_value_type_to_pa(c.dtype.to_value_type()))
            for c in src.target.view.entity_columns
        }
        got = {k: str(table[k].type) for k in src.plan.join_keys}
        raise ParityError(
            f"entity keys for view {src.target.name!r} do not convert to the entity types {wanted} "
            f"(the file has {got})"
        ) from e
    seen: set = set()
    keep = []
    for i, row in enumerate(zip(*[table[k].to_pylist() for k in table.column_names], strict=True)):
        if row not in seen:
            seen.add(row)
            keep.append(i)
    return table.take(pa.array(keep, pa.int64()))  # an empty list alone is a null-typed array
