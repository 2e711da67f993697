"""Message bytes -> validated record dict, or ``BadRecord`` with a reason for the dead-letter topic.

Reasons are a small fixed set (they label metrics and the DLQ ``fs-dlq-reason`` header); details
name fields and types but never values, so nothing from a payload reaches logs or headers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from fs_platform.errors import ConfigError
from fs_platform.plugins.kafka_ingest.config import FieldType, TopicSpec

REASONS = (
    "undecodable",
    "missing_field",
    "wrong_type",
    "bad_number",
    "bad_timestamp",
    "future_timestamp",
    "bad_key",
    "too_late",
    "transform_error",
    "validation_failed",
)
_EPOCH_DIVISOR = {"s": 1, "ms": 1_000, "us": 1_000_000}


class BadRecord(Exception):
    """A message that can never be ingested as is; goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def _is_int(v) -> bool:
    return type(v) is int


def _is_float(v) -> bool:
    return type(v) is float or type(v) is int


def _is_str(v) -> bool:
    return type(v) is str


def _is_bool(v) -> bool:
    return type(v) is bool


def _is_time(v) -> bool:
    return type(v) in (str, int, float, datetime)


_CHECKS: dict[FieldType, Callable[[object], bool]] = {
    "int": _is_int,
    "int32": _is_int,
    "float": _is_float,
    "string": _is_str,
    "bool": _is_bool,
    "timestamp": _is_time,
}
_PY_TYPES = {int: "int", float: "float", str: "string", bool: "bool", type(None): "null"}
_INT_RANGES = {"int": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}


def numeric_range(kind: FieldType, name: str, spec: TopicSpec) -> tuple[float, float] | None:
    """Accepted ``[low, high]`` of a numeric field: its declared ``bounds`` within what the type holds
    (floats: ``max_abs_float`` without bounds). NaN is never within a range. None: not numeric."""
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        if name in spec.bounds:
            low, high = max(low, spec.bounds[name][0]), min(high, spec.bounds[name][1])
        return low, high
    if kind == "float":
        return spec.bounds.get(name, (-spec.max_abs_float, spec.max_abs_float))
    return None


def _bad_values(kind: FieldType, rng: tuple[float, float] | None) -> Callable[[list], list[int]]:
    """Batch path: the indices of a column's values that fail the checks (None fails every check)."""
    if rng is not None:
        low, high = rng
        if kind == "float":
            return lambda col: [
                i
                for i, v in enumerate(col)
                if (type(v) is not float and type(v) is not int) or not low <= v <= high
            ]
        return lambda col: [i for i, v in enumerate(col) if type(v) is not int or not low <= v <= high]
    if kind == "timestamp":
        return lambda col: [i for i, v in enumerate(col) if type(v) not in (str, int, float, datetime)]
    ok = _CHECKS[kind]
    return lambda col: [i for i, v in enumerate(col) if not ok(v)]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ZERO = timedelta(0)


def _json_decoder(_: TopicSpec, __: Path) -> Callable[[bytes], object]:
    return json.loads


def _avro_decoder(spec: TopicSpec, repo: Path) -> Callable[[bytes], object]:
    try:
        import fastavro
    except ImportError:
        raise ConfigError(
            f"topic {spec.topic!r} uses format avro, which needs the fastavro package",
            hint="pip install fastavro",
        ) from None
    path = repo / spec.avro_schema
    try:
        schema = fastavro.parse_schema(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read Avro schema {path} of topic {spec.topic!r}: {e}") from None

    def decode(data: bytes):
        return fastavro.schemaless_reader(io.BytesIO(data), schema)

    return decode


class RecordDecoder:
    """Decodes, maps and validates one topic's messages.

    Returns the record with field names mapped and the event time replaced by a UTC datetime.
    """

    def __init__(self, spec: TopicSpec, fields: dict[str, FieldType], repo: Path):
        self.spec = spec
        self._decode = (_avro_decoder if spec.format == "avro" else _json_decoder)(spec, repo)
        # The batch path parses JSON with orjson (~3x the standard parser; the parse was a fifth of
        # the loop's time). What orjson refuses (NaN and Infinity literals, integers past 64 bits, lone
        # surrogates, UTF-16) takes the per-message path, which parses with ``json.loads`` as before:
        # the outcome of every message is the standard parser's.
        self._batch_decode = orjson.loads if spec.format == "json" else self._decode
        self._mapping = dict(spec.field_mapping)
        self._checks = [
            (name, _CHECKS[kind], kind, numeric_range(kind, name, spec))
            for name, kind in fields.items()
            if name != spec.event_time_field
        ]
        self._batch_checks = [(name, _bad_values(kind, rng)) for name, _, kind, rng in self._checks]
        self._time_field = spec.event_time_field
        self._divisor = _EPOCH_DIVISOR[spec.epoch_unit]
        self._max_future = spec.max_future_delta

    def __call__(self, value: bytes | None, now: datetime) -> dict:
        if value is None:
            raise BadRecord("undecodable", "empty message (tombstone)")
        try:
            record = self._decode(value)
        except Exception as e:  # any decoder failure means the bytes are unusable
            raise BadRecord("undecodable", f"not valid {self.spec.format}: {type(e).__name__}") from None
        if type(record) is not dict:
            raise BadRecord("undecodable", f"expected an object, got {type(record).__name__}")
        if self._mapping:
            record = {self._mapping.get(k, k): v for k, v in record.items()}
        for name, ok, kind, rng in self._checks:
            v = record.get(name)
            if v is None:
                raise BadRecord("missing_field", f"field {name!r} is missing or null")
            if not ok(v):
                raise BadRecord(
                    "wrong_type", f"field {name!r}: expected {kind}, got {_PY_TYPES.get(type(v), 'other')}"
                )
            if rng is not None and not rng[0] <= v <= rng[1]:  # NaN fails every comparison
                raise BadRecord(
                    "bad_number", f"field {name!r}: not a finite {kind} within [{rng[0]:g}, {rng[1]:g}]"
                )
        record[self._time_field] = ts = self._event_time(record.get(self._time_field))
        if ts - now > self._max_future:
            raise BadRecord(
                "future_timestamp",
                f"field {self._time_field!r} is more than {self.spec.max_future} ahead of now",
            )
        return record

    def decode_batch(self, values: list, now: datetime) -> tuple[list[dict], list[int], list[int], list]:
        """A poll batch at once, with exactly the outcome of calling ``self`` per message.

        Returns ``(records, event_us, positions, bad)``: the valid records (event time replaced by a
        UTC datetime), their event times in microseconds since the epoch, their positions in
        ``values``, and ``(position, BadRecord)`` for the others, each in order. Fields are checked
        column by column; a message any check flags goes through the per-message path, which
        names its exact reason."""
        loads, mapping, tf = self._batch_decode, self._mapping, self._time_field
        recs: list[dict] = []
        pos: list[int] = []
        slow: list[int] = []  # positions for the per-message path
        for i, v in enumerate(values):
            try:
                r = loads(v)
            except Exception:  # None (tombstone) or undecodable
                slow.append(i)
                continue
            if type(r) is not dict:
                slow.append(i)
                continue
            recs.append({mapping.get(k, k): x for k, x in r.items()} if mapping else r)
            pos.append(i)
        flagged: set[int] = set()
        for name, bad_values in self._batch_checks:
            flagged.update(bad_values([r.get(name) for r in recs]))
        limit = (now - _EPOCH) // _US + self._max_future // _US
        fromiso, fromts, div = datetime.fromisoformat, datetime.fromtimestamp, self._divisor
        out_recs, out_us, out_pos = [], [], []
        for j, r in enumerate(recs):
            if flagged and j in flagged:
                slow.append(pos[j])
                continue
            v = r.get(tf)
            t = type(v)
            try:
                if t is str:
                    ts = fromiso(v)
                elif t is int or t is float:
                    ts = fromts(v / div, UTC)
                elif isinstance(v, datetime):
                    ts = v
                else:
                    slow.append(pos[j])
                    continue
            except (ValueError, OverflowError, OSError):
                slow.append(pos[j])
                continue
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            elif ts.utcoffset() != _ZERO:
                ts = ts.astimezone(UTC)
            us = (ts - _EPOCH) // _US
            if us > limit:
                slow.append(pos[j])
                continue
            r[tf] = ts
            out_recs.append(r)
            out_us.append(us)
            out_pos.append(pos[j])
        bad: list = []
        if slow:
            accepted = False
            for i in sorted(slow):
                try:
                    r = self(values[i], now)
                except BadRecord as e:
                    bad.append((i, e))
                    continue
                accepted = True  # a check was stricter than the per-message path: its verdict wins
                out_recs.append(r)
                out_us.append((r[tf] - _EPOCH) // _US)
                out_pos.append(i)
            if accepted:
                order = sorted(range(len(out_pos)), key=out_pos.__getitem__)
                out_recs = [out_recs[k] for k in order]
                out_us = [out_us[k] for k in order]
                out_pos = [out_pos[k] for k in order]
        return out_recs, out_us, out_pos, bad

    def _event_time(self, v) -> datetime:
        name = self._time_field
        if v is None:
            raise BadRecord("missing_field", f"event time field {name!r} is missing or null")
        try:
            if type(v) is str:
                ts = datetime.fromisoformat(v)
            elif type(v) in (int, float):
                ts = datetime.fromtimestamp(v / self._divisor, UTC)
            elif isinstance(v, datetime):
                ts = v
            else:
                raise BadRecord(
                    "wrong_type", f"event time field {name!r} has type {_PY_TYPES.get(type(v), 'other')}"
                )
        except (ValueError, OverflowError, OSError):
            raise BadRecord("bad_timestamp", f"event time field {name!r} is not a valid time") from None
        if ts.tzinfo is None:
            return ts.replace(tzinfo=UTC)
        return ts if ts.utcoffset() == timedelta(0) else ts.astimezone(UTC)
