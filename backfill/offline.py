"""Offline side of a chunk: recompute a view's rows from its batch definition, then replace exactly
that ``[start, end)`` range of the view's Delta table in one commit.

The replace is a delta-rs predicate overwrite (``replaceWhere``): one atomic commit that removes
the range's old rows and adds the new ones, so a rerun or a resumed chunk never duplicates rows,
and readers see either the old or the new range, never a mix. delta-rs also refuses the commit if
any new row falls outside the predicate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, write_deltalake

from fs_platform.backfill.definitions import BatchContext, BatchDefinition
from fs_platform.backfill.model import Interval
from fs_platform.errors import BackfillError, SchemaMismatchError, SourceNotFoundError
from fs_platform.newest import newest_per_key
from fs_platform.timeutil import microsecond_timestamps

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Computed:
    data: pa.Table
    """Rows with event time in the chunk, in the view table's schema."""
    source_version: int | None
    """Delta version of the definition's first input that was read."""


def ts_literal(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def range_predicate(column: str, interval: Interval) -> str:
    if not _IDENT.match(column):
        raise BackfillError(
            f"timestamp column {column!r} is not a plain identifier; cannot build a range predicate"
        )
    return f"{column} >= '{ts_literal(interval.start)}' AND {column} < '{ts_literal(interval.end)}'"


def _open(location: str, what: str) -> DeltaTable:
    if not DeltaTable.is_deltatable(location):
        raise SourceNotFoundError(f"{what}: no Delta table at {location}", hint="write the input table first")
    return DeltaTable(location)


def compute(definition: BatchDefinition, interval: Interval, ts_field: str, engine=None) -> Computed:
    """The definition's rows for ``interval`` (read window widened by the lookback)."""
    read_from = interval.start - definition.lookback
    tables = {
        name: _open(definition.location(name), f"input {name!r} of {definition.view}")
        for name in definition.inputs
    }
    versions = {name: t.version() for name, t in tables.items()}
    if definition.query:
        out = _compute_sql(definition, tables, versions, read_from, interval.end, engine)
    else:
        frames = {
            name: _read_window(t, definition.input_timestamp, read_from, interval.end).to_pandas()
            for name, t in tables.items()
        }
        result = definition.function(BatchContext(definition.view, interval.start, interval.end, frames))
        out = result if isinstance(result, pa.Table) else pa.Table.from_pandas(result, preserve_index=False)
    if ts_field not in out.column_names:
        raise SchemaMismatchError(f"batch definition of {definition.view!r} returned no {ts_field!r} column")
    out = microsecond_timestamps(out)
    first = next(iter(versions.values()), None)
    return Computed(out.filter(_within(out[ts_field], interval)), first)


def split(computed: Computed, intervals: list[Interval], ts_field: str) -> list[Computed]:
    """The rows of a span computed in one pass, cut into its chunks (same source version)."""
    ts = computed.data[ts_field]
    return [Computed(computed.data.filter(_within(ts, iv)), computed.source_version) for iv in intervals]


def _within(ts, interval: Interval):
    return pc.and_(pc.greater_equal(ts, _scalar(interval.start)), pc.less(ts, _scalar(interval.end)))


def _scalar(value: datetime) -> pa.Scalar:
    return pa.scalar(value, type=pa.timestamp("us", tz="UTC"))


def _read_window(table: DeltaTable, column: str, start: datetime, end: datetime) -> pa.Table:
    window = (ds.field(column) >= _scalar(start)) & (ds.field(column) < _scalar(end))
    return table.to_pyarrow_dataset().to_table(filter=window)


def _compute_sql(definition, tables, versions, start, end, engine) -> pa.Table:
    from fs_platform.plugins.delta.engine import get_engine
    from fs_platform.plugins.delta.job import DeltaRetrievalJob, Staging

    engine = engine or get_engine(None)
    spark = engine.spark
    column = definition.input_timestamp
    for name in tables:
        frame = (
            spark.read.format("delta")
            .option("versionAsOf", versions[name])  # read what the ledger records
            .load(definition.location(name))
            .where(
                f"{column} >= TIMESTAMP '{ts_literal(start)}' AND {column} < TIMESTAMP '{ts_literal(end)}'"
            )
        )
        frame.createOrReplaceTempView(name)
    staging = Staging(None) if engine.local_files else None
    # The Delta store's job brings a Spark result home (parquet hand-off on a local engine).
    hint = f"check the SQL batch definition of {definition.view!r} (backfills.py) against its input tables"
    return collect(DeltaRetrievalJob(engine, lambda: spark.sql(definition.query), staging, failure_hint=hint))


def collect(job) -> pa.Table:
    """``job.to_arrow()`` (the Delta job handles empty results itself)."""
    return job.to_arrow()


def conform(data: pa.Table, schema: pa.Schema, view: str) -> pa.Table:
    """Columns by name in the table's order and types; missing or extra columns are errors."""
    extra = sorted(set(data.column_names) - set(schema.names))
    missing = [n for n in schema.names if n not in data.column_names]
    if extra or missing:
        raise SchemaMismatchError(
            f"batch definition of {view!r} does not match its Delta table: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    columns = []
    for f in schema:
        column = data[f.name]
        try:
            columns.append(column.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Arrow's message quotes the offending value: name only the column and the types.
            raise SchemaMismatchError(
                f"batch definition of {view!r}: column {f.name!r} of type {column.type} "
                f"cannot be stored as the Delta table's {f.type}"
            ) from None
    return pa.table(columns, schema=schema)


def replace_range(
    location: str,
    data: pa.Table,
    ts_field: str,
    interval: Interval,
    view: str,
    metadata: dict[str, str],
    *,
    create: bool = False,
) -> int:
    """Replace ``interval`` of the table at ``location`` with ``data`` in one commit; the new version.
    A missing table is created from ``data`` only with ``create`` (else ``SourceNotFoundError``)."""
    props = CommitProperties(custom_metadata=metadata)
    if not DeltaTable.is_deltatable(location):
        if not create:
            raise SourceNotFoundError(
                f"the Delta table of {view!r} does not exist at {location} (deleted?); nothing was committed",
                hint="restore it, or rerun the backfill with --create to create it from the recomputed rows",
            )
        write_deltalake(location, data, mode="append", commit_properties=props)
        return DeltaTable(location).version()
    table = DeltaTable(location)
    fitted = conform(data, pa.schema(table.schema().to_arrow()), view)
    write_deltalake(
        table,
        fitted,
        mode="overwrite",
        predicate=range_predicate(ts_field, interval),
        commit_properties=props,
    )
    return table.version()


def rows_in_range(location: str, ts_field: str, interval: Interval) -> int:
    """Rows of the Delta table at ``location`` with event time in ``interval`` (0 if no table)."""
    if not DeltaTable.is_deltatable(location):
        return 0
    dataset = DeltaTable(location).to_pyarrow_dataset()
    kind = dataset.schema.field(ts_field).type
    start, end = (
        pa.scalar(t, pa.timestamp("us", tz="UTC")).cast(kind) for t in (interval.start, interval.end)
    )
    return dataset.count_rows(filter=(ds.field(ts_field) >= start) & (ds.field(ts_field) < end))


def latest_per_key(data: pa.Table, keys: list[str], ts_field: str, created: str | None) -> pa.Table | None:
    """The newest row per entity (what the online store should end up holding for the chunk).

    ``None`` when some entity's newest rows tie exactly on (event, created) time: the point-in-time
    join and materialization then pick by a hash of the feature values computed in Spark
    (``fs_platform.plugins.delta.pit_join.tie_hash``), so the caller reads the chunk's latest rows back
    through Spark rather than picking another row here."""
    if data.num_rows == 0:
        return data
    newest, tied = newest_per_key(data, keys, ts_field, created)
    return None if tied else data.take(newest)


class RowStats:
    """Per-file row counts and min/max of one timestamp column of a Delta table (read once)."""

    def __init__(self, location: str, column: str):
        self.files: list[tuple[int, pd.Timestamp, pd.Timestamp]] | None = None
        if not DeltaTable.is_deltatable(location):
            return
        actions = pa.table(DeltaTable(location).get_add_actions(flatten=True))
        lo_name, hi_name = f"min.{column}", f"max.{column}"
        if lo_name not in actions.column_names:
            return
        lows, highs = actions[lo_name].to_pylist(), actions[hi_name].to_pylist()
        if any(v is None for v in lows + highs):
            return
        counts = actions["num_records"].to_pylist()
        self.files = [
            (n, pd.Timestamp(lo), pd.Timestamp(hi)) for n, lo, hi in zip(counts, lows, highs, strict=True)
        ]

    def estimate(self, interval: Interval) -> int | None:
        """Rows of ``[start, end)`` (uniform spread within a file); ``None`` without statistics."""
        if self.files is None:
            return None
        start, end = pd.Timestamp(interval.start), pd.Timestamp(interval.end)
        total = 0.0
        for n, lo, hi in self.files:
            if hi < start or lo >= end:
                continue
            span = (hi - lo).total_seconds()
            overlap = (min(hi, end) - max(lo, start)).total_seconds()
            total += n if span <= 0 else n * max(0.0, min(1.0, overlap / span))
        return round(total)
