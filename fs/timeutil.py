"""Time helpers. Everything the platform stores or compares is UTC-aware, at microsecond precision.

Parsing (``parse_time``), ``utcnow``, and the epoch-microsecond conversions every store uses:
``epoch_micros`` / ``from_epoch_micros`` for one value, ``arrow_epoch_micros`` for an Arrow column,
``microsecond_timestamps`` to make a table's timestamps UTC microseconds before writing it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fs_platform.errors import InvalidArgument
from fs_platform.metadata import parse_duration

if TYPE_CHECKING:
    import pyarrow as pa

_RELATIVE = re.compile(r"^(now)?\s*-\s*(\d+[smhdw])$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


TIME_FORMS = "2026-11-01, 2026-11-01T12:00:00+02:00, now, now-2d or -2d"


def parse_time(text: str | datetime, *, now: datetime | None = None, what: str | None = None) -> datetime:
    """``2026-11-01``, ISO 8601 with or without offset, ``now``, ``-2d`` / ``now-2d`` -> UTC datetime.

    A naive input is taken as UTC; an input with an offset is converted to UTC. Anything else is an
    ``InvalidArgument`` naming ``what`` (the parameter or option) and the accepted forms.
    """
    if isinstance(text, datetime):
        return text.replace(tzinfo=UTC) if text.tzinfo is None else text.astimezone(UTC)
    raw = text.strip() if isinstance(text, str) else ""
    now = now or utcnow()
    if raw == "now":
        return now
    m = _RELATIVE.match(raw)
    if m:
        return now - parse_duration(m.group(2))
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        where = f"{what}: " if what else ""
        raise InvalidArgument(f"{where}not a time: {text!r} (use {TIME_FORMS})") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_range(
    start: str | datetime, end: str | datetime, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """A half-open ``[start, end)`` (each as :func:`parse_time`, relative to one ``now``);
    ``InvalidArgument`` unless end is after start."""
    now = now or utcnow()
    start_dt, end_dt = parse_time(start, now=now, what="start"), parse_time(end, now=now, what="end")
    if end_dt <= start_dt:
        raise InvalidArgument(f"end {end_dt.isoformat()} is not after start {start_dt.isoformat()}")
    return start_dt, end_dt


def epoch_micros(ts: datetime) -> int:
    """Exact microseconds since the Unix epoch; a naive datetime is UTC (Feast's convention)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - EPOCH) // MICROSECOND


def duration_micros(duration: timedelta) -> int:
    """A duration in whole microseconds, exactly (no float rounding; sub-second TTLs stay exact)."""
    return duration // MICROSECOND


def from_epoch_micros(us: int) -> datetime:
    """The UTC datetime ``us`` microseconds after the Unix epoch (exact)."""
    return EPOCH + timedelta(microseconds=us)


def arrow_epoch_micros(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """int64 microseconds since the epoch of an Arrow timestamp column (naive = UTC; nanoseconds
    are truncated, as every table keeps microseconds). ``TypeError`` if it is not a timestamp."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_timestamp(column.type):
        raise TypeError(f"arrow type {column.type} is not a timestamp")
    if column.type.tz is None:
        column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
    out = pc.cast(column, pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def microsecond_timestamps(table: pa.Table) -> pa.Table:
    """``table`` with every timestamp column in microseconds (Spark rejects nanoseconds); a naive
    column becomes UTC, a zoned one keeps its zone; nanoseconds are truncated."""
    import pyarrow as pa

    columns = [
        c.cast(pa.timestamp("us", tz=c.type.tz or "UTC"), safe=False) if pa.types.is_timestamp(c.type) else c
        for c in table.columns
    ]
    return pa.table(columns, names=table.column_names)
