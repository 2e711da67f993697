"""An independent, deliberately naive reference for aggregation views: per request row, loop over the
events and apply the documented rule literally (docs/aggregations.md "Semantics"). No tiles, no
vectorisation, no code shared with the engines (expressions are evaluated by their own small
interpreter here), so a bug in the engines cannot hide in it."""

from __future__ import annotations

import math
import operator
import struct

import pandas as pd

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


def evaluate(expr, row: dict):
    """SQL-style evaluation of an Expr on one event (None is null)."""
    op, args = expr.op, expr.args
    if op == "col":
        v = row.get(args[0])
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    if op == "lit":
        return args[0]
    if op == "is_null":
        return evaluate(args[0], row) is None
    if op == "~":
        v = evaluate(args[0], row)
        return None if v is None else not v
    a, b = evaluate(args[0], row), evaluate(args[1], row)
    if op == "&":
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if op == "|":
        if a is True or b is True:
            return True
        return None if a is None or b is None else False
    if a is None or b is None:
        return None
    if op == "/":
        return None if float(b) == 0 else float(a) / float(b)
    return _OPS[op](a, b)


def _micros(ts) -> int:
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return (t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)


def _number(v):
    if v is None:
        return None
    v = float(v)  # booleans are 1/0
    return v if math.isfinite(v) else None


def expected(spec, events: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """``requests``: the join keys and ``event_timestamp`` (the request time). Returns one row per
    request (same order) with every feature of ``spec``: count/sum 0 when nothing counts, else null."""
    rows = events.to_dict("records")
    for r in rows:
        r["__us"] = None if pd.isna(r[spec.timestamp_field]) else _micros(r[spec.timestamp_field])
    out = []
    for req in requests.to_dict("records"):
        t = _micros(req["event_timestamp"])
        mine = [
            r
            for r in rows
            if r["__us"] is not None
            and all(r[k] == req[k] and r[k] is not None for k in spec.join_keys)
            and (spec.where is None or evaluate(spec.where, r) is True)
        ]
        values = {}
        for f in spec.features:
            g = f.window.tile_us
            first_tile = t // g - f.window.span_us // g
            inside = [r for r in mine if r["__us"] <= t and r["__us"] // g >= first_tile]
            if f.input < 0:
                xs = [(r["__us"], 1.0) for r in inside]
            else:
                xs = [(r["__us"], _number(evaluate(spec.inputs[f.input], r))) for r in inside]
                xs = [(u, x) for u, x in xs if x is not None]
            values[f.name] = _function(f.function, xs)
        out.append(values)
    return pd.DataFrame(out, columns=[f.name for f in spec.features])


def _function(name: str, xs: list[tuple[int, float]]):
    vals = [x for _, x in xs]
    n = len(vals)
    if name == "count":
        return n
    if name == "approx_count_distinct":
        return hll_estimate(hll_registers(vals))
    if name == "sum":
        return float(sum(vals))
    if n == 0:
        return None
    if name == "mean":
        return sum(vals) / n
    if name == "min":
        return min(vals)
    if name == "max":
        return max(vals)
    if name == "last":
        return max(xs)[1]  # latest time, ties: the larger value
    if name == "stddev":
        if n < 2:
            return None
        mean = sum(vals) / n
        return math.sqrt(sum((x - mean) ** 2 for x in vals) / (n - 1))
    raise ValueError(name)


# -- the approximate distinct count, as docs/aggregations.md defines it, one value at a time --------------
_MASK = 2**64 - 1


def hll_registers(values) -> list[int]:
    """256 HyperLogLog registers: per value its float64 bits through SplitMix64's finaliser; the top 8
    bits pick the register, which keeps the largest 1 + leading zeros of the next 40 bits."""
    registers = [0] * 256
    for x in values:
        bits = struct.unpack("<Q", struct.pack("<d", 0.0 if x == 0 else float(x)))[0]
        z = (bits + 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
        w = (z >> 16) & (2**40 - 1)
        registers[z >> 56] = max(registers[z >> 56], 41 - w.bit_length())
    return registers


def hll_estimate(registers: list[int]) -> int:
    m = len(registers)
    zeros = registers.count(0)
    raw = 0.7213 / (1 + 1.079 / m) * m * m / sum(2.0**-r for r in registers)
    return round(m * math.log(m / zeros) if raw <= 2.5 * m and zeros else raw)


def hll_words(registers: list[int]) -> list[float]:
    """The registers as stored in a tile: 32 words of 8 base-64 digits."""
    return [float(sum(registers[8 * j + d] * 64**d for d in range(8))) for j in range(32)]
