"""The partials algebra of the aggregation kernel (:mod:`fs_platform.plugins.delta.aggregation_kernel`):
rows as partials, reduced over contiguous groups, merged, scanned within segments and finished into
feature values (numpy only).

Partials are dicts (kind, input) -> array, the tile slots of fs.aggregation.tiles: n count (int64
here), s sum, q M2 = sum of squared deviations from the mean (identity 0), m min (+inf), M max
(-inf), t/l time (int64, INT_MIN when none) and value of the latest input (ties: the larger value;
NaN when none). q is only ever present with the n and s of its input (stddev reads all three).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fs_platform.aggregation import sketch

_INT_MIN = np.iinfo(np.int64).min

Partials = dict


def changes(*columns: np.ndarray) -> np.ndarray:
    """True where any column differs from the row before (and on the first row)."""
    n = len(columns[0])
    out = np.ones(n, dtype=bool)
    if n > 1:
        out[1:] = columns[0][1:] != columns[0][:-1]
        for column in columns[1:]:
            out[1:] |= column[1:] != column[:-1]
    return out


def row_partials(slots, req: np.ndarray, us: np.ndarray, xs: list[np.ndarray]) -> Partials:
    """Each row as a partial: an event with a valid input is (1, x, 0, x, x, time, x)."""
    out: Partials = {}
    for kind, i in slots:
        if i < 0:  # only ("n", -1): counts are booleans on rows, int64 once reduced
            out[(kind, i)] = ~req
            continue
        x = xs[i]
        valid = ~np.isnan(x)  # request rows carry NaN inputs
        if kind == "n":
            out[(kind, i)] = valid
        elif kind == "s":
            out[(kind, i)] = np.where(valid, x, 0.0)
        elif kind == "q":
            out[(kind, i)] = np.zeros(len(x))
        elif kind == "m":
            out[(kind, i)] = np.where(valid, x, np.inf)
        elif kind == "M":
            out[(kind, i)] = np.where(valid, x, -np.inf)
        elif kind == "t":
            out[(kind, i)] = np.where(valid, us, _INT_MIN)
        elif kind == "l":
            out[(kind, i)] = x  # NaN where not valid
        elif kind == "h":  # one sketch code per row (0: none); registers once reduced
            out[(kind, i)] = sketch.codes(x)
    return out


def reduce(parts: Partials, starts: np.ndarray, group: np.ndarray) -> Partials:
    """Partials of contiguous groups starting at ``starts`` (``group``: each element's group number)."""
    out: Partials = {}
    for (kind, i), values in parts.items():
        if kind == "n":
            out[(kind, i)] = np.add.reduceat(values, starts, dtype=np.int64)
        elif kind == "s":
            out[(kind, i)] = np.add.reduceat(values, starts)
        elif kind == "m":
            out[(kind, i)] = np.minimum.reduceat(values, starts)
        elif kind == "M":
            out[(kind, i)] = np.maximum.reduceat(values, starts)
        elif kind == "t":
            latest = np.maximum.reduceat(values, starts)
            at_latest = np.where(values == latest[group], parts[("l", i)], -np.inf)
            value = np.maximum.reduceat(at_latest, starts)
            value[latest == _INT_MIN] = np.nan
            out[(kind, i)] = latest
            out[("l", i)] = value
        elif kind == "h":  # registers (groups, sketch.REGISTERS): from row codes, or merged
            if values.ndim == 1:
                out[(kind, i)] = sketch.registers_of(group, values, len(starts))
            else:
                out[(kind, i)] = np.maximum.reduceat(values, starts, axis=0)
    for (kind, i), values in parts.items():
        if kind == "q":  # pooled: the parts' M2 plus each part's count x (its mean - the group's)^2
            n, s = parts[("n", i)], parts[("s", i)]
            with np.errstate(divide="ignore", invalid="ignore"):
                means = _mean(out[("n", i)], out[("s", i)])[group]
                spread = np.where(n > 0, n * (_mean(n, s) - means) ** 2, 0.0)
            out[(kind, i)] = np.add.reduceat(values, starts) + np.add.reduceat(spread, starts)
    return out


def _mean(n: np.ndarray, s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), 0.0)


def take(parts: Partials, index: np.ndarray) -> Partials:
    return {slot: values[index] for slot, values in parts.items()}


def empty_partials(parts: Partials, size: int) -> Partials:
    fill = {"n": 0, "s": 0.0, "q": 0.0, "m": np.inf, "M": -np.inf, "t": _INT_MIN, "l": np.nan, "h": 0}
    return {
        (kind, i): np.full((size, *v.shape[1:]), fill[kind], dtype=v.dtype) for (kind, i), v in parts.items()
    }


def combine(a: Partials, b: Partials) -> Partials:
    """Elementwise merge of two partials (associative and commutative; M2 by Chan et al.)."""
    out: Partials = {}
    for (kind, i), x in a.items():
        y = b[(kind, i)]
        if kind in ("n", "s"):
            out[(kind, i)] = x + y
        elif kind == "q":
            na, nb = a[("n", i)], b[("n", i)]
            delta = _mean(nb, b[("s", i)]) - _mean(na, a[("s", i)])
            with np.errstate(divide="ignore", invalid="ignore"):
                both = (na > 0) & (nb > 0)
                extra = np.where(both, delta * delta * (na * nb / np.maximum(na + nb, 1)), 0.0)
            out[(kind, i)] = x + y + extra
        elif kind == "m":
            out[(kind, i)] = np.minimum(x, y)
        elif kind in ("M", "h"):
            out[(kind, i)] = np.maximum(x, y)
        elif kind == "t":
            xl, yl = a[("l", i)], b[("l", i)]
            later = (y > x) | ((y == x) & (yl > xl))
            out[(kind, i)] = np.where(later, y, x)
            out[("l", i)] = np.where(later, yl, xl)
    return out


def scan(parts: Partials, segment: np.ndarray, reverse: bool = False) -> Partials:
    """Inclusive scan of ``parts`` within runs of equal ``segment`` (sorted), forward or backward.

    Hillis-Steele: step ``d`` merges each element with the one ``d`` before it in its segment, for
    d = 1, 2, 4, ... (log2 of the longest segment steps; sums come out pairwise). Each step touches
    only the elements at least ``d`` from their segment's start, so short segments drop out early and
    a few long ones (hot keys) cost what they hold.
    """
    if reverse:
        flipped = scan({s: v[::-1] for s, v in parts.items()}, segment[::-1])
        return {s: np.ascontiguousarray(v[::-1]) for s, v in flipped.items()}
    n = len(segment)
    if n < 2:
        return {s: v.copy() for s, v in parts.items()}
    index = np.arange(n)
    first = np.maximum.accumulate(np.where(changes(segment), index, 0))
    out = {}
    floats = {}
    for (kind, i), values in parts.items():
        if kind == "n":  # integer counts: a running sum minus the one before the segment is exact
            running = np.cumsum(values)
            out[(kind, i)] = running - np.where(first > 0, running[first - 1], 0)
        else:
            floats[(kind, i)] = values.copy()
    if floats:
        # M2 merges read the counts and sums next to them: scan those together with it.
        for _, i in [s for s in floats if s[0] == "q"]:
            floats[("n", i)] = parts[("n", i)].copy()
        offset = index - first  # position within the segment
        active = np.flatnonzero(offset >= 1)
        d = 1
        while len(active):
            merged = combine(take(floats, active - d), take(floats, active))
            for s, values in merged.items():
                floats[s][active] = values
            d *= 2
            active = active[offset[active] >= d]
        out.update({s: v for s, v in floats.items() if s[0] != "n"})
    return out


def pick(parts: Partials, index: np.ndarray, ok: np.ndarray, empty: Partials) -> Partials:
    return {
        slot: np.where(ok.reshape(-1, *[1] * (values.ndim - 1)), values[index], empty[slot])
        for slot, values in parts.items()
    }


def finish(function: str, i: int, parts: Partials) -> pa.Array:
    if function == "count":
        return pa.array(parts[("n", i)], pa.int64())
    if function == "approx_count_distinct":
        return pa.array(sketch.estimate(parts[("h", i)]), pa.int64())
    if function == "sum":
        return pa.array(parts[("s", i)], pa.float64())
    if function == "min":
        values = parts[("m", i)]
        return pa.array(values, pa.float64(), mask=np.isinf(values))
    if function == "max":
        values = parts[("M", i)]
        return pa.array(values, pa.float64(), mask=np.isinf(values))
    if function == "last":
        return pa.array(parts[("l", i)], pa.float64(), mask=parts[("t", i)] == _INT_MIN)
    n = parts[("n", i)]
    if function == "mean":
        return pa.array(_mean(n, parts[("s", i)]), pa.float64(), mask=n == 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # fs.aggregation.tiles.stddev, vectorised
        value = np.sqrt(np.maximum(parts[("q", i)] / (n - 1), 0.0))
    return pa.array(value, pa.float64(), mask=n < 2)
