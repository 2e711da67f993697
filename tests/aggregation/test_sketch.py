"""approx_count_distinct's sketch (fs_platform.aggregation.sketch): its error against the exact count,
merging across tiles, and agreement with the naive reference (tests/aggregation/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fs_platform.aggregation import Aggregation, sketch
from fs_platform.aggregation.spec import build_spec
from fs_platform.aggregation.tiles import layout
from tests.aggregation.reference import hll_estimate, hll_registers, hll_words

SIGMA = 1.04 / np.sqrt(sketch.REGISTERS)  # HyperLogLog's standard error for m registers: 6.5 %


def _registers(values) -> np.ndarray:
    codes = sketch.codes(np.asarray(values, dtype=np.float64))
    return sketch.registers_of(np.zeros(len(codes), dtype=np.int64), codes, 1)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 30, 100, 1_000, 10_000, 200_000])
def test_error_against_the_exact_count(n):
    """20 random sets per size: each within 4 standard errors (+2 for tiny sets), the mean error
    within 1.5 (with a fixed seed: repeatable)."""
    rng = np.random.default_rng(n)
    errors = []
    for _ in range(20):
        values = rng.choice(2**40, size=n, replace=False).astype(np.float64)
        values = np.concatenate([values, values[: n // 3]])  # duplicates count once
        got = int(sketch.estimate(_registers(values))[0])
        assert abs(got - n) <= 4 * SIGMA * n + 2, (n, got)
        errors.append(abs(got - n) / max(n, 1))
    assert np.mean(errors) <= 1.5 * SIGMA


def test_small_counts():
    """Linear counting below 2.5 x 256: a customer's handful of merchants: up to 2 exact, within
    3 + 10 % (observed worst over 200 draws per size: 7 at 40), about 1 off on average."""
    rng = np.random.default_rng(7)
    errors = []
    for n in range(0, 41):
        for _ in range(10):
            values = rng.integers(1, 10**6, size=n).astype(np.float64)
            exact = len(set(values.tolist()))
            error = abs(int(sketch.estimate(_registers(values))[0]) - exact)
            assert error <= (0 if exact <= 2 else 3 + 0.1 * exact), (n, exact, error)
            errors.append(error)
    assert np.mean(errors) <= 1.5


def test_merging_tiles_is_the_sketch_of_their_union():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5000, 3000).astype(float), rng.integers(2500, 9000, 3000).astype(float)
    merged = np.maximum(_registers(a), _registers(b))
    assert (merged == _registers(np.concatenate([a, b]))).all()
    words = sketch.pack(merged)
    assert words.shape == (1, sketch.WORDS) and (sketch.unpack(words) == merged).all()
    assert (words < 2**48).all() and (words == np.floor(words)).all()  # exact integers in float64


def test_the_engines_sketch_is_the_documented_one():
    """Codes, registers, words and estimate equal the naive one-value-at-a-time reference; nulls,
    NaN and infinities are not counted; -0.0 is 0.0."""
    rng = np.random.default_rng(11)
    for n in (0, 5, 300, 4000):
        values = [*rng.normal(0, 1e6, n).round(2).tolist(), 0.0, -0.0, 1.0, True]
        registers = _registers([*values, np.nan, np.inf, -np.inf])
        assert registers[0].tolist() == hll_registers(values)
        assert int(sketch.estimate(registers)[0]) == hll_estimate(hll_registers(values))
        assert sketch.pack(registers)[0].tolist() == hll_words(hll_registers(values))


def test_a_sketch_takes_256_bytes_per_tile():
    spec = build_spec(
        "v", ["customer_id"], "ts", [Aggregation("merchant_id", "approx_count_distinct", ["24h"])]
    )
    assert [f.dtype for f in spec.features] == ["Int64"]
    assert layout(spec) == (("n", -1), *[("h", 0)] * sketch.WORDS)
    assert sketch.WORDS * 8 == 256
