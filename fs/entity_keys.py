"""Entity key values of the wrong type: cast only when exact and lossless, else one clear error.

The one rule for retrieval (``entity_df``, ``fs_platform.plugins.delta``) and online reads and writes
(``fs_platform.plugins.redis_store``: Feast's API, ``FastReader``, ``fs serve``):

- an integer join key (INT32/INT64) takes an integer, a float with no fraction (``2.0``) or a
  string holding a canonical decimal integer (``"2"``, ``"-7"``; not ``"02"``, ``"2.0"``, ``" 2"``),
  within the type's range; never a bool, a fraction or NaN;
- a string join key takes a string, or an integer (``2`` -> ``"2"``); never a float or a bool;
- a bytes join key takes bytes.

Anything else is an ``EntityKeyTypeError`` that names the key and counts the values, never quoting
them (entity keys may be PII). Nulls stay null (they match nothing).
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

import numpy as np
import pandas as pd
from feast.value_type import ValueType

from fs_platform.errors import EntityKeyTypeError

INTEGER_KEYS = (ValueType.INT32, ValueType.INT64)
RANGES = {ValueType.INT32: (-(2**31), 2**31 - 1), ValueType.INT64: (-(2**63), 2**63 - 1)}
CANONICAL_INT = r"-?(0|[1-9][0-9]*)"
_CANONICAL = re.compile(CANONICAL_INT + r"\Z")
ACCEPTED = {
    ValueType.INT32: "integers, whole floats (2.0) or canonical integer strings ('2')",
    ValueType.INT64: "integers, whole floats (2.0) or canonical integer strings ('2')",
    ValueType.STRING: "strings or integers",
    ValueType.BYTES: "bytes",
}


def exact(value: Any, kind: ValueType) -> Any:
    """``value`` as a key of ``kind`` (int, str or bytes) if exact and lossless; else ``TypeError``."""
    if kind in INTEGER_KEYS:
        if isinstance(value, bool | np.bool_):
            raise TypeError
        if isinstance(value, numbers.Integral):
            out = int(value)
        elif isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
            out = int(value)
        elif isinstance(value, str) and _CANONICAL.match(value):
            out = int(value)
        else:
            raise TypeError
        low, high = RANGES[kind]
        if not low <= out <= high:
            raise TypeError
        return out
    if kind == ValueType.STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
            return str(int(value))
        raise TypeError
    if kind == ValueType.BYTES:
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        raise TypeError
    return value


def error(key: str, kind: ValueType, bad: int, where: str) -> EntityKeyTypeError:
    """The one error: which key, its type, how many values, what would have been accepted."""
    return EntityKeyTypeError(
        f"{where}: {bad} value(s) of join key {key!r} are not exactly {kind.name} "
        f"(accepted: {ACCEPTED.get(kind, kind.name)}; nothing is cast when it would change a value)",
        hint="fix the key column's type or values",
    )


def exact_series(series: pd.Series, kind: ValueType, *, key: str, where: str) -> pd.Series:
    """A pandas entity column as exact keys of ``kind`` (nulls kept), or ``EntityKeyTypeError``."""
    if kind not in ACCEPTED:
        return series
    dtype = series.dtype
    if (
        kind in INTEGER_KEYS
        and pd.api.types.is_integer_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
    ):
        values = series.dropna()
        low, high = RANGES[kind]
        bad = int(((values < low) | (values > high)).sum()) if len(values) else 0
        if bad:
            raise error(key, kind, bad, where)
        return series
    if kind in INTEGER_KEYS and pd.api.types.is_float_dtype(dtype):
        values = series.dropna().to_numpy(dtype="float64")
        low, high = RANGES[kind]
        # -2**k and 2**k are exact doubles: these bounds are exact.
        ok = np.isfinite(values) & (np.floor(values) == values) & (values >= low) & (values < high + 1)
        if not ok.all():
            raise error(key, kind, int((~ok).sum()), where)
        return series.astype("Int64")
    if kind == ValueType.STRING and isinstance(dtype, pd.StringDtype):
        return series
    nulls = series.isna().to_numpy()
    out, bad = [], 0
    for value, null in zip(series.to_numpy(dtype=object), nulls, strict=True):
        if null:
            out.append(None)
            continue
        try:
            out.append(exact(value, kind))
        except TypeError:
            bad += 1
    if bad:
        raise error(key, kind, bad, where)
    if kind in INTEGER_KEYS:
        return pd.Series(pd.array(out, dtype="Int64"), index=series.index, name=series.name)
    return pd.Series(out, index=series.index, name=series.name, dtype=object)
