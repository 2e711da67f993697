"""Steps of ``TopicPipeline.process`` on one poll batch: which decoded records go on (key, lateness),
which produced rows fit the row schema, the rows' created time, and a batch transform's output as
a table. A record turned away is appended to ``bad`` as ``(record, BadRecord)``, kept in offset order.

``records`` are the batch's Kafka records; ``recs``, ``event_us`` and ``pos`` the decoded ones, their
event times (us) and their indices in ``records``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fs_platform.errors import IngestError
from fs_platform.plugins.kafka_ingest.decode import BadRecord


def _keep(keep: list[int], records, recs, event_us, pos, bad: list, rejected: BadRecord):
    """The decoded records at indices ``keep``; the others go to ``bad`` (kept in offset order)."""
    if len(keep) == len(pos):
        return recs, event_us, pos
    kept = set(keep)
    bad.extend((records[p], rejected) for j, p in enumerate(pos) if j not in kept)
    bad.sort(key=lambda b: b[0].offset)
    return [recs[j] for j in keep], [event_us[j] for j in keep], [pos[j] for j in keep]


def check_keys(key_field: str, records, recs, event_us, pos, bad):
    """A record whose Kafka key is not its entity's (null, or another value than ``key_field``'s) was
    partitioned apart from that entity's other events: dead-lettered (``bad_key``), never aggregated
    or written apart from them."""
    rejected = BadRecord("bad_key", f"the Kafka key is null or is not the value of field {key_field!r}")
    keep = [j for j, p in enumerate(pos) if records[p].key == str(recs[j][key_field]).encode()]
    return _keep(keep, records, recs, event_us, pos, bad, rejected)


def drop_late(lateness_us: int, records, recs, event_us, pos, bad):
    """Aggregation topics: an event older than its Kafka record's timestamp minus the allowed
    lateness is dead-lettered (``too_late``), so neither tiles nor the raw Delta table count it.
    The record timestamp, not the clock, decides: a replay decides the same way."""
    keep = []
    for j, p in enumerate(pos):
        stamp = records[p].timestamp
        if stamp is None or stamp < 0 or event_us[j] >= stamp * 1000 - lateness_us:
            keep.append(j)
    too_late = BadRecord("too_late", "event time is older than the allowed lateness")
    return _keep(keep, records, recs, event_us, pos, bad, too_late)


def fitting(
    schema: pa.Schema, rows: list[dict], row_pos: list[int], records, bad: list
) -> tuple[list[dict], list[int]]:
    """The rows whose record's rows all fit the schema; the other records are dead-lettered (a
    transform returned a value its column cannot hold, e.g. an int beyond Int32)."""
    by_record: dict[int, list[dict]] = {}
    for row, p in zip(rows, row_pos, strict=True):
        by_record.setdefault(p, []).append(row)
    kept_rows, kept_pos = [], []
    for p, its_rows in by_record.items():
        try:
            pa.Table.from_pylist(its_rows, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            bad.append(
                (
                    records[p],
                    BadRecord("transform_error", "transform output does not fit the view's columns"),
                )
            )
            continue
        kept_rows += its_rows
        kept_pos += [p] * len(its_rows)
    return kept_rows, kept_pos


def stamp_created(created_col: str | None, table: pa.Table, records: list, row_pos: list[int]) -> pa.Table:
    """Rows' created time (unless the transform set it): their record's Kafka timestamp, the
    same on every delivery, so online and offline hold the same ``(event, created)`` and a
    redelivery is the same row. A record without a timestamp (-1) leaves it null (write time)."""
    if not table.num_rows or created_col is None:
        return table
    ms = np.fromiter(
        (-1 if records[p].timestamp is None else records[p].timestamp for p in row_pos),
        dtype=np.int64,
        count=len(row_pos),
    )
    stamps = pa.array(ms * 1000, pa.int64(), mask=ms < 0).cast(pa.timestamp("us", tz="UTC"))
    i = table.schema.get_field_index(created_col)
    return table.set_column(i, created_col, pc.coalesce(table[created_col], stamps))


def batch_table(
    schema: pa.Schema, transform: str, join_keys: list[str], event_col: str, out: dict, n: int
) -> pa.Table:
    """A batch transform's output columns as a ``schema`` table (checked like hook rows);
    ``transform``: its name, for errors."""
    arrays = []
    for f in schema:
        v = out.get(f.name)
        if v is None:
            if f.name in join_keys or f.name == event_col:
                raise IngestError(f"transform {transform!r} returned no {f.name!r} column")
            arrays.append(pa.nulls(n, f.type))
            continue
        if f.name == event_col:
            a = pa.array(np.asarray(v, dtype=np.int64)).cast(f.type)
        else:
            a = pa.array(v, type=f.type)
        if len(a) != n or (f.name in join_keys and a.null_count):
            raise IngestError(f"transform {transform!r}: column {f.name!r} has nulls or a wrong length")
        arrays.append(a)
    return pa.Table.from_arrays(arrays, schema=schema)
