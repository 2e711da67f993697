"""Typed value comparison of one feature column: exact for ints, strings and bools, tolerance for floats.

Nulls and NaN are handled explicitly: null == null and NaN == NaN match; null vs a value, NaN vs a
number and (unless ``nan_is_null``) null vs NaN are value mismatches. An online value whose Python
type cannot come from the feature's declared type (a string in an Int64 feature, a bool in a
Float64 one) is a type mismatch, whatever its value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from feast.value_type import ValueType

from fs_platform.parity.classify import Outcome

_INT = {ValueType.INT32, ValueType.INT64}
_FLOAT = {ValueType.FLOAT, ValueType.DOUBLE}


@dataclass(frozen=True)
class Tolerance:
    """Floats match when ``|a - b| <= abs_tol`` or ``|a - b| <= rel_tol * max(|a|, |b|)``."""

    abs_tol: float = 1e-9
    rel_tol: float = 1e-9
    nan_is_null: bool = False


@dataclass(frozen=True)
class Tolerances:
    """A default tolerance plus overrides by ``view.feature`` or bare ``feature`` name."""

    default: Tolerance = Tolerance()
    overrides: dict[str, Tolerance] = field(default_factory=dict)

    def for_feature(self, view: str, feature: str) -> Tolerance:
        return self.overrides.get(f"{view}.{feature}") or self.overrides.get(feature) or self.default

    @classmethod
    def parse(cls, specs: list[str]) -> Tolerances:
        """Parse tolerance specs: ``abs=1e-6``, ``rel=1e-4,abs=0.01``, ``avg_amount_24h:abs=0.001``,
        ``view.feature:rel=1e-3``, ``nan_is_null``."""
        default = Tolerance()
        overrides: dict[str, Tolerance] = {}
        for spec in specs:
            target, _, body = spec.rpartition(":")
            base = overrides.get(target, default) if target else default
            values = {"abs_tol": base.abs_tol, "rel_tol": base.rel_tol, "nan_is_null": base.nan_is_null}
            for part in filter(None, (p.strip() for p in body.split(","))):
                name, eq, raw = part.partition("=")
                if name == "nan_is_null" and not eq:
                    values["nan_is_null"] = True
                    continue
                if name not in ("abs", "rel") or not eq:
                    raise ValueError(
                        f"bad tolerance {spec!r}: use abs=X, rel=X or nan_is_null, optionally after FEATURE:"
                    )
                try:
                    number = float(raw)
                except ValueError:
                    raise ValueError(f"bad tolerance {spec!r}: {raw!r} is not a number") from None
                if number < 0 or math.isnan(number):
                    raise ValueError(f"bad tolerance {spec!r}: must be a non-negative number")
                values[f"{name}_tol"] = number
            tol = Tolerance(**values)
            if target:
                overrides[target] = tol
            else:
                default = tol
        return cls(default, overrides)


def _type_ok(value_type: ValueType):
    """Predicate: can this online Python value come from the declared type (None always can)?"""
    if value_type in _INT:
        return lambda v: v is None or type(v) is int
    if value_type in _FLOAT:
        return lambda v: v is None or type(v) in (float, int)
    if value_type == ValueType.STRING:
        return lambda v: v is None or type(v) is str
    if value_type == ValueType.BOOL:
        return lambda v: v is None or type(v) is bool
    if value_type.name.endswith("_LIST"):
        return lambda v: v is None or isinstance(v, list)
    return lambda v: True


def _is_nan(v) -> bool:
    return type(v) is float and v != v


def _float_equal(a, b, tol: Tolerance) -> bool:
    if a is None or b is None:
        if tol.nan_is_null:
            return (a is None or _is_nan(a)) and (b is None or _is_nan(b))
        return a is None and b is None
    if _is_nan(a) or _is_nan(b):
        return _is_nan(a) and _is_nan(b)
    if a == b:  # also equal infinities
        return True
    if math.isinf(a) or math.isinf(b):  # an infinity is only equal to itself (inf <= inf * rel_tol)
        return False
    diff = abs(a - b)
    return diff <= tol.abs_tol or diff <= tol.rel_tol * max(abs(a), abs(b))


def _float_list_equal(a, b, tol: Tolerance) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and all(_float_equal(x, y, tol) for x, y in zip(a, b, strict=True))


def compare_column(
    value_type: ValueType, online: list, offline: list, rows: np.ndarray, tol: Tolerance
) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes (MATCHED / VALUE_MISMATCH / TYPE_MISMATCH) and a badness score for ``rows``.

    The score ranks the worst examples: relative difference for numbers, 1 otherwise.
    """
    on = [online[i] for i in rows]
    off = [offline[i] for i in rows]
    fast = _vectorised(value_type, on, off, tol)
    if fast is not None:
        return fast
    ok = _type_ok(value_type)
    out = np.full(len(rows), Outcome.MATCHED, dtype=np.int8)
    score = np.zeros(len(rows))
    if value_type in _FLOAT or value_type in (ValueType.FLOAT_LIST, ValueType.DOUBLE_LIST):
        equal = _float_equal if value_type in _FLOAT else _float_list_equal
        for j, (a, b) in enumerate(zip(on, off, strict=True)):
            if not ok(a):
                out[j], score[j] = Outcome.TYPE_MISMATCH, 1.0
            elif not equal(a, b, tol):
                out[j] = Outcome.VALUE_MISMATCH
                score[j] = _relative(a, b)
        return out, score
    for j, (a, b) in enumerate(zip(on, off, strict=True)):
        if not ok(a):
            out[j], score[j] = Outcome.TYPE_MISMATCH, 1.0
        elif a != b:
            out[j] = Outcome.VALUE_MISMATCH
            score[j] = _relative(a, b) if value_type in _INT else 1.0
    return out, score


def _vectorised(
    value_type: ValueType, on: list, off: list, tol: Tolerance
) -> tuple[np.ndarray, np.ndarray] | None:
    """The common case in numpy: no nulls on either side and every online value of an allowed type.

    Returns None when a value needs the per-value rules above (nulls, wrong types, huge ints).
    """
    if None in on or None in off:
        return None
    types = set(map(type, on))
    try:
        if value_type in _FLOAT and types <= {float, int}:
            a, b = np.array(on, dtype=np.float64), np.array(off, dtype=np.float64)
            nan_a, nan_b = np.isnan(a), np.isnan(b)
            with np.errstate(invalid="ignore"):
                diff = np.abs(a - b)
                scale = np.maximum(np.abs(a), np.abs(b))
                finite = np.isfinite(a) & np.isfinite(b)  # an infinity is only equal to itself
                close = (a == b) | (finite & ((diff <= tol.abs_tol) | (diff <= tol.rel_tol * scale)))
                score = np.where(nan_a ^ nan_b, np.inf, diff / np.maximum(scale, 1e-12))
            equal = np.where(nan_a | nan_b, nan_a & nan_b, close)
        elif value_type in _INT and types <= {int}:
            a, b = np.array(on, dtype=np.int64), np.array(off, dtype=np.int64)
            equal = a == b
            with np.errstate(invalid="ignore", divide="ignore"):
                score = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1)
        elif value_type == ValueType.STRING and types <= {str}:
            equal = np.array(on, dtype=object) == np.array(off, dtype=object)
            score = np.ones(len(on))
        elif value_type == ValueType.BOOL and types <= {bool}:
            equal = np.array(on, dtype=bool) == np.array(off, dtype=bool)
            score = np.ones(len(on))
        else:
            return None
    except OverflowError:  # an int beyond int64: the per-value path handles it
        return None
    out = np.where(equal, Outcome.MATCHED, Outcome.VALUE_MISMATCH).astype(np.int8)
    return out, np.where(equal, 0.0, score)


def _relative(a, b) -> float:
    if type(a) in (int, float) and type(b) in (int, float) and not (_is_nan(a) or _is_nan(b)):
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    return float("inf")  # null vs value, NaN vs number: the worst kind of difference
