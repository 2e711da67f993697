"""Aggregation views in batch: an ``AggregationSpec`` (fs.aggregation) compiled to Spark.

Two entry points, both plain PySpark DataFrame code (Sail, Spark Connect, classic Spark):

* :func:`as_of` -- the feature values as of every entity row (training sets, ``get_historical_features``);
* :func:`tiles` -- the per-tile partials the stream path keeps (backfill, ``fs materialize``).

Semantics (docs/aggregations.md; the contract shared with the stream path and the online read): a
feature with window span ``w`` and tile size ``g`` has, at request time ``t`` for key ``k``, the
aggregate of ``k``'s events ``e`` (after the spec's ``where``) with ``tile(e.time) >= tile(t) - w/g``
and ``e.time <= t``, where ``tile(x) = floor(x_us / g_us)``. Null, NaN and infinite inputs are
ignored; count and sum of nothing are 0, the other functions null; ``last`` is the value of the
latest event (ties: the larger value); ``stddev`` is ``fs_platform.aggregation.tiles.stddev`` of (n, s, q).

Formulation of :func:`as_of` (measured on Sail 0.7.2; numbers in docs/offline_store.md,
"Aggregation views"): the events and the distinct (key, request time) pairs of the entity rows are
unioned, hash-partitioned by key and handed to one ``mapInArrow`` kernel (:class:`_Kernel`, numpy
only) that, per partition, sorts by (key, time, events before requests) and

0. drops the events that no request can see (more than the longest window before the next request
   of their key: one pass, the sparse keys' old history goes here);
1. cuts the rows into *atoms*: consecutive rows of one key and one tile of the gcd of the tile sizes,
   up to and including a request row; atom partials are ``reduceat`` sums / minima / maxima (no
   per-event Python). Each tile size is a multiple of the gcd, so every granularity below works on
   atoms, not rows;
2. per tile size, merges atoms into *runs* (one (key, tile) up to a request) and scans the runs of the
   (key, tile) segments holding a request (a segmented scan: running sums for counts, Hillis-Steele,
   log2(runs per tile) vectorised steps, for the rest): the scan at a request's run is its *head* (the
   events of its own tile up to ``t``); every segment's total is its tile;
3. merges the ``n = w/g`` tiles before the request's (the *tail*) in O(1) per request whatever ``n``
   (van Herk / Gil-Werman): the tiles some tail reaches are cut into aligned blocks of ``n``; a forward
   scan gives prefixes and a backward scan suffixes within each block, and ``[kt - n, kt - 1]`` is one
   block's suffix plus the next block's prefix, looked up with ``searchsorted``;

and the request's value is ``merge(tail, head)``. Every step is linear in the partition (plus the
sort), so a key with millions of events costs what its events cost, never events x requests. Sums are
reduced over atoms, runs and tiles and scanned pairwise; ``stddev`` merges (n, sum, M2) by Chan et al.
(as the online read pools tile M2s). No running sum over a whole history is ever subtracted, so no
cancellation. The kernel's rows are left-joined back to the entity rows on (keys, request time).

Spark window functions were measured first and dropped: on Sail 0.7.2 a running sum over 10M events
partitioned by (key, tile) took 11 s for one tile size (Sail evaluates aggregate windows row by row
and pays per partition), and a ``RANGE n PRECEDING`` frame subtracts retracted values from a running
sum (cancellation on long histories).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fs_platform.aggregation import sketch
from fs_platform.aggregation.spec import COUNTS, AggregationSpec
from fs_platform.aggregation.tiles import layout
from fs_platform.errors import OfflineStoreError

KEY = "__fs_k{}"  # key columns inside the kernel
US = "__fs_us"  # event / request time, epoch microseconds
REQ = "__fs_req"  # true on request rows
INPUT = "__fs_x{}"  # input values (double)
_INT_MIN = np.iinfo(np.int64).min
_CODE_LIMIT = 2**62  # combined (key, time or tile) codes must stay below this; past it, slower fallbacks


def col(name: str):
    """A column by exact name (dots and spaces in names are not struct access)."""
    return F.col(f"`{name}`")


# -- events ------------------------------------------------------------------------------------------


def event_rows(
    events: DataFrame,
    spec: AggregationSpec,
    lower_us: int | None = None,
    upper_us: int | None = None,
) -> DataFrame:
    """The events that count, in kernel names: keys ``__fs_k<i>``, time ``__fs_us`` (epoch micros),
    inputs ``__fs_x<i>`` as double (booleans 1/0). Drops rows failing ``where`` (null = false) and
    rows with a null key or time; keeps ``lower_us <= time <= upper_us`` when given."""
    frame = events
    types = dict(events.dtypes)
    floats = [c for c in sorted(spec.columns) if types.get(c) in ("double", "float")]
    if floats:  # NaN is null, as in SQL (fs.aggregation.tiles.nan_as_null does the same in Arrow)
        frame = frame.withColumns({c: F.when(~F.isnan(col(c)), col(c)) for c in floats})
    if spec.where is not None:
        frame = frame.where(spec.where.to_spark())
    us = F.unix_micros(col(spec.timestamp_field).cast("timestamp"))
    columns = [col(k).alias(KEY.format(i)) for i, k in enumerate(spec.join_keys)]
    columns.append(us.alias(US))
    columns += [e.to_spark().cast("double").alias(INPUT.format(i)) for i, e in enumerate(spec.inputs)]
    rows = frame.select(*columns)
    keep = F.col(US).isNotNull()
    for i in range(len(spec.join_keys)):
        keep = keep & F.col(KEY.format(i)).isNotNull()
    if lower_us is not None:
        keep = keep & (F.col(US) >= F.lit(lower_us))
    if upper_us is not None:
        keep = keep & (F.col(US) <= F.lit(upper_us))
    return rows.where(keep)


# -- as_of ---------------------------------------------------------------------------------------------


def as_of(
    entity: DataFrame,
    entity_ts: str,
    join_keys: list[str],
    spec: AggregationSpec,
    events: DataFrame,
    outputs: dict[str, str],
    *,
    partitions: int | None = None,
) -> DataFrame:
    """``entity`` (every row, duplicates included, any order) with one column per requested feature.

    ``join_keys``: the entity columns holding ``spec.join_keys``, in that order. ``events``: the raw
    events (columns ``spec.join_keys``, ``spec.timestamp_field`` and ``spec.columns``); pre-filtering
    them to ``[min entity time - spec.horizon_us, max entity time]`` is the caller's choice (it only
    saves work). ``outputs``: feature name -> output column name (a subset of the spec's features).
    ``partitions``: how many key-hash partitions the kernel runs in (default: the embedded Sail's
    parallelism, else the session's ``spark.sql.shuffle.partitions``). Counts are ``bigint`` (0 when
    nothing counts), the rest double.
    """
    features = {f.name: f for f in spec.features}
    unknown = [name for name in outputs if name not in features]
    if unknown:
        raise OfflineStoreError(f"aggregation view {spec.view!r} has no feature {unknown[0]!r}")
    if len(join_keys) != len(spec.join_keys):
        raise OfflineStoreError(
            f"aggregation view {spec.view!r} aggregates by {list(spec.join_keys)}; got entity keys {join_keys}"
        )
    if not outputs:
        return entity
    wanted = [features[name] for name in outputs]
    plan = KernelPlan.build(spec, wanted, [outputs[f.name] for f in wanted])
    key_types = {f.name: f.dataType for f in events.schema.fields}
    keys = [KEY.format(i) for i in range(len(join_keys))]
    rows = event_rows(events, spec).withColumn(REQ, F.lit(False))
    request_us = F.unix_micros(col(entity_ts).cast("timestamp"))
    requests = entity.select(
        *[
            col(j).cast(key_types[k]).alias(a)
            for j, k, a in zip(join_keys, spec.join_keys, keys, strict=True)
        ],
        request_us.alias(US),
    )
    requests = requests.where(_all_not_null([*keys, US])).distinct()
    requests = requests.select(
        *keys,
        US,
        *[F.lit(None).cast("double").alias(INPUT.format(i)) for i in range(len(spec.inputs))],
        F.lit(True).alias(REQ),
    )
    union = rows.unionByName(requests)
    count = partitions or _shuffle_partitions(entity)
    schema = T.StructType(
        [T.StructField(k, key_types[name]) for k, name in zip(keys, spec.join_keys, strict=True)]
        + [T.StructField(US, T.LongType())]
        + [
            T.StructField(out, T.LongType() if f.function in COUNTS else T.DoubleType())
            for f, out in plan.named
        ]
    )
    _pickle_by_value()
    values = union.repartition(count, *keys).mapInArrow(_Kernel(plan), schema)

    ets = f"__fs_ets_{spec.view}"
    left = entity.withColumn(ets, request_us)
    condition = [col(j) == F.col(k) for j, k in zip(join_keys, keys, strict=True)]
    condition.append(F.col(ets) == F.col(US))
    joined = left.join(values, on=_and(condition), how="left").drop(*keys, US, ets)
    # No request row (a null key or time) -> what an entity without events gets.
    defaults = []
    for name in joined.columns:
        f = next((f for f, out in plan.named if out == name), None)
        if f is not None and f.function in ("sum", *COUNTS):
            zero = F.lit(0).cast("bigint") if f.function in COUNTS else F.lit(0.0)
            defaults.append(F.coalesce(col(name), zero).alias(name))
        else:
            defaults.append(col(name))
    return joined.select(*defaults)


def _pickle_by_value() -> None:
    """Ship the kernel's code with the query, so a remote Spark's Python workers need only numpy and
    pyarrow, not fs (cloudpickle would otherwise pickle ``_Kernel`` as an import of this module, and the
    sketch it calls)."""
    import sys

    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cloudpickle.register_pickle_by_value(sketch)


def _shuffle_partitions(frame: DataFrame) -> int:
    from fs_platform.plugins.delta.engine import partitions_for

    embedded = partitions_for(frame.sparkSession)
    if embedded:
        return embedded
    try:
        value = frame.sparkSession.conf.get("spark.sql.shuffle.partitions")
        return max(int(value or 0), 1)
    except Exception:  # a session that does not expose the setting
        return 8


def _all_not_null(names: list[str]):
    return _and([F.col(n).isNotNull() for n in names])


def _and(conditions: list):
    result = conditions[0]
    for condition in conditions[1:]:
        result = result & condition
    return result


# -- the kernel ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelFeature:
    function: str
    input: int  # -1: events
    granularity: int  # index into KernelPlan.tile_us
    tiles: int  # w / g


@dataclass(frozen=True)
class KernelPlan:
    """Plain data (no fs objects), so the kernel pickles by value for a remote Spark's Python workers."""

    key_count: int
    input_count: int
    tile_us: tuple[int, ...]
    slots: tuple[tuple[tuple[str, int], ...], ...]  # per granularity: the (kind, input) partials it needs
    features: tuple[KernelFeature, ...]
    outputs: tuple[str, ...]

    @staticmethod
    def build(spec: AggregationSpec, features: list, outputs: list[str]) -> KernelPlan:
        sizes = sorted({f.window.tile_us for f in features})
        slots: list[list[tuple[str, int]]] = [[] for _ in sizes]
        kinds = {
            "count": "n",
            "sum": "s",
            "mean": "ns",
            "min": "m",
            "max": "M",
            "last": "tl",
            "stddev": "nsq",
            "approx_count_distinct": "h",
        }
        planned = []
        for f in features:
            gi = sizes.index(f.window.tile_us)
            for kind in kinds[f.function]:
                if (kind, f.input) not in slots[gi]:
                    slots[gi].append((kind, f.input))
            planned.append(KernelFeature(f.function, f.input, gi, f.window.tiles))
        return KernelPlan(
            key_count=len(spec.join_keys),
            input_count=len(spec.inputs),
            tile_us=tuple(sizes),
            slots=tuple(tuple(s) for s in slots),
            features=tuple(planned),
            outputs=tuple(outputs),
        )

    @property
    def named(self) -> list[tuple[KernelFeature, str]]:
        return list(zip(self.features, self.outputs, strict=True))


class _Kernel:
    """``mapInArrow`` function: one hash partition of events + request rows in, request rows with
    their feature values out (see the module docstring for the algorithm)."""

    def __init__(self, plan: KernelPlan):
        self.plan = plan

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        table = pa.Table.from_batches(batches)
        if not pc.any(table[REQ]).as_py():
            return
        yield from self.compute(table).to_batches()

    def compute(self, table: pa.Table) -> pa.Table:
        plan = self.plan
        keys = [table[KEY.format(i)] for i in range(plan.key_count)]
        kid = _key_ids(keys)
        us = table[US].to_numpy()
        req = table[REQ].to_numpy(zero_copy_only=False)
        order = _sort_order(kid, us, req)
        kid, us, req = kid[order], us[order], req[order]
        # Only events within the longest window before a request of their key can count: drop the rest.
        reach = max(
            f.tiles * plan.tile_us[f.granularity] + plan.tile_us[f.granularity] for f in plan.features
        )
        keep = _near_requests(kid, us, req, reach)
        rows = order[keep]
        kid, us, req = kid[keep], us[keep], req[keep]
        xs = [
            _finite(table[INPUT.format(i)].to_numpy(zero_copy_only=False)[rows])
            for i in range(plan.input_count)
        ]
        at = np.flatnonzero(req)  # request rows, in sorted order

        # Atoms: rows of one (key, tile of the gcd of the tile sizes) up to and including a request row.
        # Every granularity's runs are unions of consecutive atoms, so rows are reduced once.
        base = math.gcd(*plan.tile_us)
        base_tile = np.floor_divide(us, base)
        new_atom = _changes(kid, base_tile)
        new_atom[1:] |= req[:-1]
        atom_of_row = np.cumsum(new_atom) - 1
        starts = np.flatnonzero(new_atom)
        every = tuple(dict.fromkeys(slot for slots in plan.slots for slot in slots))
        atoms = _reduce(_row_partials(every, req, us, xs), starts, atom_of_row)
        atom_kid = np.cumsum(_changes(kid[starts])) - 1  # dense key numbers: small lookup codes
        atom_tile = base_tile[starts]
        atom_ends_request = req[np.append(starts[1:], len(us)) - 1]
        request_atom = atom_of_row[at]

        values: dict[tuple[int, int], Partials] = {}
        for gi, g in enumerate(plan.tile_us):
            parts = {slot: atoms[slot] for slot in plan.slots[gi]}
            sizes = sorted({f.tiles for f in plan.features if f.granularity == gi})
            tile = np.floor_divide(atom_tile, g // base)
            merged = _granularity(parts, atom_kid, tile, atom_ends_request, request_atom, sizes)
            for n, partials in merged.items():
                values[(gi, n)] = partials
        columns = {KEY.format(i): keys[i].take(pa.array(rows[at])) for i in range(plan.key_count)}
        columns[US] = pa.array(us[at])
        for f, out in plan.named:
            columns[out] = _finish(f.function, f.input, values[(f.granularity, f.tiles)])
        return pa.table(columns)


def _near_requests(kid: np.ndarray, us: np.ndarray, req: np.ndarray, reach: int) -> np.ndarray:
    """Rows to keep (sorted by key, time): requests, and events less than ``reach`` before the next
    request of their key."""
    requests = np.flatnonzero(req)
    if not len(requests):
        return req.copy()
    before = np.cumsum(req) - req  # requests before each row: the next one at or after it is requests[before]
    found = before < len(requests)
    target = requests[np.minimum(before, len(requests) - 1)]
    return req | (found & (kid[target] == kid) & (us[target] - us < reach))


def _changes(*columns: np.ndarray) -> np.ndarray:
    """True where any column differs from the row before (and on the first row)."""
    n = len(columns[0])
    out = np.ones(n, dtype=bool)
    if n > 1:
        out[1:] = columns[0][1:] != columns[0][:-1]
        for column in columns[1:]:
            out[1:] |= column[1:] != column[:-1]
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    """Inputs as float64 with NaN for null (Arrow nulls arrive as NaN) and non-finite values."""
    values = values.astype(np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _key_ids(columns: list[pa.ChunkedArray]) -> np.ndarray:
    """One int64 per row, equal for equal keys (all columns): a single integer key as it is, else
    dictionary codes (combined across columns)."""
    if len(columns) == 1 and pa.types.is_integer(columns[0].type) and columns[0].null_count == 0:
        return columns[0].to_numpy().astype(np.int64, copy=False)
    kid: np.ndarray | None = None
    span = 1
    for column in columns:
        codes, size = _dense(column)
        if kid is None:
            kid, span = codes, size
        else:
            if span * size >= _CODE_LIMIT:
                kid, span = _dense(pa.array(kid))
            kid, span = kid * size + codes, span * size
    assert kid is not None
    return kid


def _dense(column) -> tuple[np.ndarray, int]:
    """(codes 0..size-1, size): equal values, equal codes (hash-based, no sort)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), max(len(encoded.dictionary), 1)


def _sort_order(kid: np.ndarray, us: np.ndarray, req: np.ndarray) -> np.ndarray:
    """Row order by (key, time, events before requests): a request sees the events of its instant."""
    if not len(us):
        return np.arange(0)
    low = int(us.min())
    width = (int(us.max()) - low + 1) * 2
    time = us - low
    time *= 2
    time += req
    k_low = int(kid.min())
    if (int(kid.max()) - k_low + 1) * width < _CODE_LIMIT:
        code = kid - k_low
    else:
        code, _ = _dense(pa.array(kid))
    if (int(code.max()) + 1) * width < _CODE_LIMIT:
        code *= width
        code += time
        return np.argsort(code)
    by_time = np.argsort(time, kind="stable")
    return by_time[np.argsort(code[by_time], kind="stable")]


# Partials are dicts (kind, input) -> array, the tile slots of fs.aggregation.tiles: n count (int64
# here), s sum, q M2 = sum of squared deviations from the mean (identity 0), m min (+inf), M max
# (-inf), t/l time (int64, INT_MIN when none) and value of the latest input (ties: the larger value;
# NaN when none). q is only ever present with the n and s of its input (stddev reads all three).

Partials = dict


def _row_partials(slots, req: np.ndarray, us: np.ndarray, xs: list[np.ndarray]) -> Partials:
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


def _reduce(parts: Partials, starts: np.ndarray, group: np.ndarray) -> Partials:
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


def _take(parts: Partials, index: np.ndarray) -> Partials:
    return {slot: values[index] for slot, values in parts.items()}


def _empty(parts: Partials, size: int) -> Partials:
    fill = {"n": 0, "s": 0.0, "q": 0.0, "m": np.inf, "M": -np.inf, "t": _INT_MIN, "l": np.nan, "h": 0}
    return {
        (kind, i): np.full((size, *v.shape[1:]), fill[kind], dtype=v.dtype) for (kind, i), v in parts.items()
    }


def _combine(a: Partials, b: Partials) -> Partials:
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


def _scan(parts: Partials, segment: np.ndarray, reverse: bool = False) -> Partials:
    """Inclusive scan of ``parts`` within runs of equal ``segment`` (sorted), forward or backward.

    Hillis-Steele: step ``d`` merges each element with the one ``d`` before it in its segment, for
    d = 1, 2, 4, ... (log2 of the longest segment steps; sums come out pairwise). Each step touches
    only the elements at least ``d`` from their segment's start, so short segments drop out early and
    a few long ones (hot keys) cost what they hold.
    """
    if reverse:
        flipped = _scan({s: v[::-1] for s, v in parts.items()}, segment[::-1])
        return {s: np.ascontiguousarray(v[::-1]) for s, v in flipped.items()}
    n = len(segment)
    if n < 2:
        return {s: v.copy() for s, v in parts.items()}
    index = np.arange(n)
    first = np.maximum.accumulate(np.where(_changes(segment), index, 0))
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
            merged = _combine(_take(floats, active - d), _take(floats, active))
            for s, values in merged.items():
                floats[s][active] = values
            d *= 2
            active = active[offset[active] >= d]
        out.update({s: v for s, v in floats.items() if s[0] != "n"})
    return out


def _granularity(
    atoms: Partials, kid, tile, ends_request, request_atom, sizes: list[int]
) -> dict[int, Partials]:
    """For one tile size: {n: merged partials per request of its tiles [kt - n, kt - 1] and the
    events of its own tile up to its time}. Inputs are atoms (see ``_Kernel.compute``) with their
    (dense) key number, tile index at this size and whether they end with a request."""
    new_segment = _changes(kid, tile)
    new_run = new_segment.copy()
    new_run[1:] |= ends_request[:-1]
    run_of_atom = np.cumsum(new_run) - 1
    runs = _reduce(atoms, np.flatnonzero(new_run), run_of_atom)
    segment_of_atom = np.cumsum(new_segment) - 1
    segment_of_run = segment_of_atom[new_run]
    request_segment = segment_of_atom[request_atom]  # sorted: requests are in row order

    # Head: scan the runs of the (key, tile) segments holding a request; a request's run is its head.
    asked = np.zeros(int(segment_of_atom[-1]) + 1 if len(segment_of_atom) else 0, dtype=bool)
    asked[request_segment] = True
    chosen = np.flatnonzero(asked[segment_of_run])
    scanned = _scan(_take(runs, chosen), segment_of_run[chosen])
    head = _take(scanned, np.searchsorted(chosen, run_of_atom[request_atom]))

    # Tiles: each segment's total; only those some request's tail reaches are kept. Requests of one
    # segment share their tail: merge once per segment holding a request.
    first_run = np.flatnonzero(_changes(segment_of_run))
    totals = _reduce(runs, first_run, segment_of_run)
    first_atom = np.flatnonzero(new_segment)
    tile_kid, tile_index = kid[first_atom], tile[first_atom]
    first_request = _changes(request_segment)
    wanted = request_segment[first_request]
    where = np.cumsum(first_request) - 1
    out = {}
    for n in sizes:
        near = _reached(tile_kid, tile_index, tile_kid[wanted], tile_index[wanted], n)
        tail = _tail(
            _take(totals, near), tile_kid[near], tile_index[near], tile_kid[wanted], tile_index[wanted], n
        )
        out[n] = _combine(_take(tail, where), head)
    return out


def _reached(tile_kid, tile_index, request_kid, request_tile, n: int) -> np.ndarray:
    """Indices of the tiles some request's tail ``[kt - n, kt - 1]`` covers (both lists sorted)."""
    if not len(tile_index) or not len(request_tile):
        return np.arange(0)
    low = min(int(tile_index.min()), int(request_tile.min())) - 1
    width = max(int(tile_index.max()), int(request_tile.max())) - low + n + 1
    if (int(max(tile_kid.max(), request_kid.max())) + 1) * width >= _CODE_LIMIT:
        return np.arange(len(tile_index))  # codes would overflow: keep every tile (correct, slower)
    codes = request_kid * width + (request_tile - low)
    first = tile_kid * width + (tile_index - low) + 1
    j = np.searchsorted(codes, first)
    reached = j < len(codes)
    reached[reached] = codes[j[reached]] <= first[reached] + n - 1
    return np.flatnonzero(reached)


def _tail(totals: Partials, tile_kid, tile_index, request_kid, request_tile, n: int) -> Partials:
    """Merge of each request's tiles ``[kt - n, kt - 1]`` (van Herk / Gil-Werman over aligned blocks
    of ``n`` tiles): suffix of the block holding ``kt - n`` plus prefix of the block holding ``kt - 1``."""
    first, last = request_tile - n, request_tile - 1
    block = np.floor_divide(tile_index, n)
    block_id = np.cumsum(_changes(tile_kid, block)) - 1
    prefix = _scan(totals, block_id)
    suffix = _scan(totals, block_id, reverse=True)
    code, first_code, last_code = _codes(tile_kid, tile_index, request_kid, first, last)
    size = len(code)
    empty = _empty(totals, len(request_kid))
    if not size:
        return empty
    # Suffix: the first tile >= kt - n, if it is in kt - n's block.
    s = np.searchsorted(code, first_code, side="left")
    s_ok = s < size
    s = np.minimum(s, size - 1)
    first_block = np.floor_divide(first, n)
    s_ok &= (tile_kid[s] == request_kid) & (block[s] == first_block)
    # Prefix: the last tile <= kt - 1, if it is in kt - 1's block and that block is not kt - n's.
    p = np.searchsorted(code, last_code, side="right") - 1
    p_ok = p >= 0
    p = np.maximum(p, 0)
    last_block = np.floor_divide(last, n)
    p_ok &= (tile_kid[p] == request_kid) & (block[p] == last_block) & (last_block != first_block)
    return _combine(_pick(suffix, s, s_ok, empty), _pick(prefix, p, p_ok, empty))


def _pick(parts: Partials, index: np.ndarray, ok: np.ndarray, empty: Partials) -> Partials:
    return {
        slot: np.where(ok.reshape(-1, *[1] * (values.ndim - 1)), values[index], empty[slot])
        for slot, values in parts.items()
    }


def _codes(tile_kid, tile_index, request_kid, first, last):
    """One sortable int64 per (key id, tile): tile list codes, and the requests' first/last codes."""
    low = min(int(tile_index.min()) if len(tile_index) else 0, int(first.min()) if len(first) else 0)
    high = max(int(tile_index.max()) if len(tile_index) else 0, int(last.max()) if len(last) else 0)
    width = high - low + 1
    keys = (
        max(int(tile_kid.max()) if len(tile_kid) else 0, int(request_kid.max()) if len(request_kid) else 0)
        + 1
    )
    if keys * width < _CODE_LIMIT:
        return (
            tile_kid * width + (tile_index - low),
            request_kid * width + (first - low),
            request_kid * width + (last - low),
        )
    # Very sparse tile numbers: rank them first (a sort; rare).
    ranks = np.unique(np.concatenate([tile_index, first, last]))
    width = len(ranks)
    return tuple(
        k * width + np.searchsorted(ranks, t)
        for k, t in ((tile_kid, tile_index), (request_kid, first), (request_kid, last))
    )


def _finish(function: str, i: int, parts: Partials) -> pa.Array:
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


# -- tiles -----------------------------------------------------------------------------------------------


def tiles(events: DataFrame, spec: AggregationSpec, start: datetime, end: datetime) -> DataFrame:
    """Per (keys, granularity, tile) partials of the events with ``start <= time < end``: the join
    keys, ``tag`` (``Granularity.tag``), ``tile`` (bigint index) and ``s0, s1, ...`` (double) in
    ``fs_platform.aggregation.tiles.layout(spec)`` order, with the stream path's values (n count, s sum,
    q M2 = sum of squared deviations from the tile's mean, m min or +inf, M max or -inf, t latest
    input time in epoch micros or -inf, l its value, ties the larger, or NaN)."""
    from fs_platform.timeutil import epoch_micros

    rows = event_rows(events, spec, epoch_micros(start), epoch_micros(end) - 1)
    slots = layout(spec)
    inputs = {}
    for i in range(len(spec.inputs)):
        x = F.col(INPUT.format(i))
        valid = x.isNotNull() & ~F.isnan(x) & (F.abs(x) != F.lit(math.inf))
        inputs[i] = (valid, F.when(valid, x))
    aggregates = []
    hashed = sorted({i for kind, i in slots if kind == "h"})
    if hashed:
        rows = _with_codes(rows, hashed)
    for index, (kind, i) in enumerate(slots):
        name = f"s{index}"
        if kind == "h":  # the sketch's words come from its registers (_sketch_words), joined below
            continue
        if i < 0:
            aggregates.append(F.count(F.lit(1)).cast("double").alias(name))
            continue
        valid, x = inputs[i]
        if kind == "n":
            value = F.count(x).cast("double")
        elif kind == "s":
            value = F.coalesce(F.sum(x), F.lit(0.0))
        elif kind == "q":  # M2: squared deviations from the tile's mean
            value = F.coalesce(F.var_pop(x) * F.count(x), F.lit(0.0))
        elif kind == "m":
            value = F.coalesce(F.min(x), F.lit(math.inf))
        elif kind == "M":
            value = F.coalesce(F.max(x), F.lit(-math.inf))
        elif kind == "t":
            value = F.coalesce(F.max(F.when(valid, F.col(US))).cast("double"), F.lit(-math.inf))
        else:  # "l": the value at the latest time, ties the larger value
            latest = F.max(F.when(valid, F.struct(F.col(US).alias("t"), x.alias("v"))))
            value = F.coalesce(latest.getField("v"), F.lit(math.nan))
        aggregates.append(value.alias(name))
    keys = [F.col(KEY.format(i)).alias(k) for i, k in enumerate(spec.join_keys)]
    frames = []
    group = [KEY.format(i) for i in range(len(spec.join_keys))] + ["__fs_tile"]
    for g in spec.granularities:
        tiled = rows.withColumn("__fs_tile", _floor_div(US, g.tile_us))
        frame = tiled.groupBy(*group).agg(*aggregates)
        for i in hashed:
            first = slots.index(("h", i))
            words = _sketch_words(tiled, group, f"__fs_h{i}", first)
            frame = frame.join(words, on=group, how="left").fillna(
                0.0, subset=list(words.columns[len(group) :])
            )
        frames.append(
            frame.select(
                *keys,
                F.lit(g.tag).alias("tag"),
                F.col("__fs_tile").alias("tile"),
                *[F.col(f"s{j}") for j in range(len(slots))],
            )
        )
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _floor_div(name: str, size: int):
    """floor(column / size) exactly, in integers (toward -inf before 1970 too)."""
    return F.expr(f"(`{name}` - pmod(`{name}`, {size})) div {size}")


def _with_codes(rows: DataFrame, inputs: list[int]) -> DataFrame:
    """``rows`` with ``__fs_h<i>``: each hashed input's sketch code (``sketch.codes``, 0: not counted)."""
    schema = T.StructType([*rows.schema.fields, *[T.StructField(f"__fs_h{i}", T.LongType()) for i in inputs]])
    _pickle_by_value()
    return rows.mapInArrow(_Codes(tuple(inputs)), schema)


class _Codes:
    """``mapInArrow`` function adding the sketch codes of some inputs (numpy; the stream's own function)."""

    def __init__(self, inputs: tuple[int, ...]):
        self.inputs = inputs

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns = dict(zip(batch.schema.names, batch.columns, strict=True))
            for i in self.inputs:
                x = pc.fill_null(batch.column(INPUT.format(i)), math.nan).to_numpy(zero_copy_only=False)
                columns[f"__fs_h{i}"] = pa.array(sketch.codes(x), pa.int64())
            yield pa.RecordBatch.from_pydict(columns)


def _sketch_words(tiled: DataFrame, group: list[str], code: str, first: int) -> DataFrame:
    """Per group the sketch's ``sketch.WORDS`` slots ``s<first>...``: each register's largest rank (a
    base-64 digit) summed into its word; exact (integers below 2**48)."""
    c = F.col(code)
    registers = (
        tiled.where(c > 0)
        .select(*group, F.floor(c / 64).cast("bigint").alias("__fs_r"), (c % 64).alias("__fs_k"))
        .groupBy(*group, "__fs_r")
        .agg(F.max("__fs_k").alias("__fs_k"))
    )
    r, k = F.col("__fs_r"), F.col("__fs_k")
    per = sketch.PER_WORD
    words = [
        F.coalesce(F.sum(F.when(F.floor(r / per) == j, k * F.pow(F.lit(64.0), r % per))), F.lit(0.0))
        .cast("double")
        .alias(f"s{first + j}")
        for j in range(sketch.WORDS)
    ]
    return registers.groupBy(*group).agg(*words)
