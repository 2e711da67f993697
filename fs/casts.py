"""Declared feature types narrower (or wider) than the stored column: the one cast rule.

Feast repos routinely declare ``Int32``/``Float32`` for columns Spark or pandas wrote as
``bigint``/``double``. Like Feast's own stores, fs casts to the declared type: in retrieval
(``fs_platform.plugins.delta.job``), and in every online write, so materialization, backfills and the
ingestor (``fs_platform.plugins.redis_store.codec``). Unlike a plain cast, a value that does not fit is
never wrapped or truncated silently: :func:`checked_cast` raises one
:class:`~fs.errors.ValueDoesNotFitError` naming the view, the feature and how many values do not fit.

- To an integer type: a value fits if it is a whole number within the type's range (``2.0`` fits
  ``Int32``, ``2.5`` and ``2**40`` do not; NaN and infinities never fit).
- To a float type: a finite value fits unless it overflows to infinity (``1e300`` does not fit
  ``Float32``); the precision a narrower float loses is what declaring it means.

Types that cannot be cast at all (string vs number, bool vs number) are refused when the view's
schema is checked (:func:`castable`, at ``fs apply`` and retrieval).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from fs_platform.errors import ValueDoesNotFitError

NUMERIC_STORED = frozenset({"tinyint", "smallint", "int", "bigint", "float", "double", "decimal"})
"""Spark simple types (``decimal`` for any precision) that cast to any numeric declared type."""

_NUMERIC_DECLARED = frozenset({"INT32", "INT64", "FLOAT", "DOUBLE"})


def castable(declared: str, stored: str) -> bool | None:
    """Whether a Feast value type name (``"INT32"``) can be served from a stored Spark type
    (``"bigint"``, ``"decimal(10,2)"``) by :func:`checked_cast`; None when this rule does not
    decide (a non-numeric declared type: the caller's own compatibility table does)."""
    if declared not in _NUMERIC_DECLARED:
        return None
    base = "decimal" if stored.startswith("decimal") else stored
    return base in NUMERIC_STORED


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def misfits(column: pa.Array | pa.ChunkedArray, target: pa.DataType) -> int:
    """How many non-null values of a numeric ``column`` do not fit numeric ``target``."""
    if column.type == target or len(column) == column.null_count:
        return 0
    kind = column.type
    if pa.types.is_floating(target):
        if pa.types.is_integer(kind):
            return 0  # integers never overflow a float type
        wide = pc.cast(column, pa.float64())
        bad = pc.and_(pc.is_finite(wide), pc.invert(pc.is_finite(pc.cast(wide, target, safe=False))))
    elif pa.types.is_integer(kind):
        bad = _outside(column, _int_range(target), _int_range(kind))
    else:  # a float or a decimal into an integer: whole, finite and in range
        wide = pc.cast(column, pa.float64())
        lo, hi = _int_range(target)
        bad = pc.or_(pc.invert(pc.is_finite(wide)), pc.not_equal(pc.floor(wide), wide))
        # -2**k and 2**k are exact doubles, so these comparisons are exact.
        bad = pc.or_(bad, pc.or_(pc.less(wide, float(lo)), pc.greater_equal(wide, float(hi + 1))))
    return int(pc.sum(pc.fill_null(bad, False)).as_py() or 0)


def _int_range(kind: pa.DataType) -> tuple[int, int]:
    bits = kind.bit_width
    if pa.types.is_unsigned_integer(kind):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _outside(column, bounds: tuple[int, int], own: tuple[int, int]):
    """Values of an integer column outside ``bounds`` (a bound the column's type cannot pass is skipped)."""
    bad = pc.less(column, pa.scalar(bounds[0], column.type)) if bounds[0] > own[0] else None
    if bounds[1] < own[1]:
        over = pc.greater(column, pa.scalar(bounds[1], column.type))
        bad = over if bad is None else pc.or_(bad, over)
    return pc.is_null(column) if bad is None else bad  # nothing to check: never true (nulls filled False)


def checked_cast(
    column: pa.Array | pa.ChunkedArray, target: pa.DataType, *, view: str, feature: str
) -> pa.Array | pa.ChunkedArray:
    """``column`` cast to ``target`` when every value fits (see the module docstring), else one
    ``ValueDoesNotFitError``; non-numeric columns get Arrow's own safe cast."""
    if column.type == target:
        return column
    if not (_numeric(column.type) and _numeric(target)):
        return pc.cast(column, target)
    bad = misfits(column, target)
    if bad:
        raise ValueDoesNotFitError(
            f"feature view {view!r}: {bad} value(s) of feature {feature!r} do not fit its declared type "
            f"({column.type} -> {target}: out of range, or a fraction into an integer)",
            hint="declare a wider type in the feature view, or fix the values in the table",
        )
    return pc.cast(column, target, safe=False)
