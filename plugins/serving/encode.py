"""Feast's ``/get-online-features`` response JSON, written straight from columns (no protobuf).

The shape is Feast's (``feast.feature_server_utils.convert_response_to_dict``): ``metadata.feature_names``
and one ``results`` entry per column with ``values``, ``statuses`` and ``event_timestamps`` (RFC 3339,
Feast's adaptive precision; ``1970-01-01T00:00:00Z`` where there is no event). Scalars are written
as they are; other types (timestamps, bytes, lists, Float32) go through Feast's own converters so
every value is byte-for-byte what Feast would send.
"""

from __future__ import annotations

import functools
import math
import time

import orjson
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from fs_platform.feast_compat import value_to_native
from fs_platform.plugins.redis_store.fast_read import Served

STATUS_NAMES = ("INVALID", "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE")  # by FieldStatus number
_status_name = STATUS_NAMES.__getitem__
_ZERO = "1970-01-01T00:00:00Z"
_AS_IS = (
    ValueType.INT64,
    ValueType.INT32,
    ValueType.STRING,
    ValueType.BOOL,
)  # a tuple: Enum hashing is Python code


def _float(x):
    if x is None or math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def json_values(values: list, vt: ValueType) -> list:
    if vt in _AS_IS:
        return values
    if vt == ValueType.DOUBLE:
        try:  # one C-level pass: NaN or an infinity (or an overflow, harmlessly) makes the sum not finite
            if math.isfinite(sum(values)):
                return values
        except TypeError:  # a None among the values
            pass
        return values if all(x is None or math.isfinite(x) for x in values) else [_float(x) for x in values]
    return [value_to_native(p) for p in python_values_to_proto_values(values, vt)]


@functools.lru_cache(maxsize=8192)  # a stored row's event time repeats on every read of it
def timestamp(us: int) -> str:
    """Feast's RFC 3339 form: no fraction, milliseconds or microseconds, whichever is exact."""
    if us == 0:
        return _ZERO
    seconds, frac = divmod(us, 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac == 0:
        return base + "Z"
    if frac % 1000 == 0:
        return f"{base}.{frac // 1000:03d}Z"
    return f"{base}.{frac:06d}Z"


def response_json(served: Served) -> bytes:
    results = []
    # The features of one view share its statuses and event-time lists: each is converted once.
    converted: dict[int, list[str]] = {}
    for values, vt, statuses, event_us in zip(
        served.values, served.types, served.statuses, served.event_us, strict=True
    ):
        n = len(values)
        if statuses is None:
            names = ["PRESENT"] * n
        elif (names := converted.get(id(statuses))) is None:
            names = converted[id(statuses)] = list(map(_status_name, statuses))
        if event_us is None:
            stamps = [_ZERO] * n
        elif (stamps := converted.get(id(event_us))) is None:
            stamps = converted[id(event_us)] = list(map(timestamp, event_us))
        results.append({"values": json_values(values, vt), "statuses": names, "event_timestamps": stamps})
    return orjson.dumps({"metadata": {"feature_names": served.names}, "results": results})
