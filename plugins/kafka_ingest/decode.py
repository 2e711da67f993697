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

from fs.errors import ConfigError
from plugins.kafka_ingest.config import FieldType, TopicSpec

REASONS = ("undecodable", "missing_field", "wrong_type", "bad_timestamp", "future_timestamp", "transform_error")
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
    "int": _is_int, "float": _is_float, "string": _is_str, "bool": _is_bool, "timestamp": _is_time,
}
_PY_TYPES = {int: "int", float: "float", str: "string", bool: "bool", type(None): "null"}


def _json_decoder(_: TopicSpec, __: Path) -> Callable[[bytes], object]:
    return json.loads


def _avro_decoder(spec: TopicSpec, repo: Path) -> Callable[[bytes], object]:
    try:
        import fastavro
    except ImportError:
        raise ConfigError(f"topic {spec.topic!r} uses format avro, which needs the fastavro package",
                          hint="pip install fastavro") from None
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
        self._mapping = dict(spec.field_mapping)
        self._checks = [(name, _CHECKS[kind], kind) for name, kind in fields.items()
                        if name != spec.event_time_field]
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
        for name, ok, kind in self._checks:
            v = record.get(name)
            if v is None:
                raise BadRecord("missing_field", f"field {name!r} is missing or null")
            if not ok(v):
                raise BadRecord("wrong_type", f"field {name!r}: expected {kind}, got {_PY_TYPES.get(type(v), 'other')}")
        record[self._time_field] = ts = self._event_time(record.get(self._time_field))
        if ts - now > self._max_future:
            raise BadRecord("future_timestamp",
                            f"field {self._time_field!r} is more than {self.spec.max_future} ahead of now")
        return record

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
                raise BadRecord("wrong_type", f"event time field {name!r} has type {_PY_TYPES.get(type(v), 'other')}")
        except (ValueError, OverflowError, OSError):
            raise BadRecord("bad_timestamp", f"event time field {name!r} is not a valid time") from None
        if ts.tzinfo is None:
            return ts.replace(tzinfo=UTC)
        return ts if ts.utcoffset() == timedelta(0) else ts.astimezone(UTC)
