"""The request-time merge has two paths: plain Python for one entity (the hot read) and numpy for
several. On random stored tiles (tiles of the windows, stale tiles of earlier ring turns, empty
records, a foreign blob) both give the same values, at request times inside and across tiles."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from fs_platform.aggregation import Aggregation
from fs_platform.aggregation.spec import spec_of
from fs_platform.aggregation.tiles import Merger
from tests.aggregation.views import events_view

SPEC = spec_of(
    events_view(
        [
            Aggregation("*", "count", ["10m", "1h", "24h"], name="n"),
            Aggregation("amount", "sum", ["10m", "24h"]),
            Aggregation("amount", "mean", ["1h", "24h"]),
            Aggregation("amount", "min", ["1h"]),
            Aggregation("amount", "max", ["24h"]),
            Aggregation("amount", "last", ["1h"]),
            Aggregation("amount", "stddev", ["24h"]),
        ]
    )
)
NOW = 1_767_225_600_000_000  # 2026-01-01 UTC, in microseconds


def _blob(merger: Merger, rng: random.Random, now_us: int) -> bytes:
    raw = bytearray(merger.empty)
    records = np.frombuffer(raw, dtype="<f8")[merger.head :].reshape(merger.records, merger.width)
    for g, ring, base in zip(SPEC.granularities, merger.rings, merger.bases, strict=True):
        kt = now_us // g.tile_us
        for k in range(kt - 2 * ring, kt + 1):  # older turns of the ring are overwritten or left stale
            if rng.random() < 0.5:
                continue
            n = rng.randint(1, 6)
            values = sorted(rng.uniform(-50, 500) for _ in range(n))
            record = records[base + k % ring]
            record[0] = k
            for c, (kind, _) in enumerate(merger.slots, start=1):
                record[c] = {
                    "n": n,
                    "s": sum(values),
                    "q": rng.uniform(0, 900),
                    "m": values[0],
                    "M": values[-1],
                    "t": float(k * g.tile_us + rng.randint(0, g.tile_us - 1)),
                    "l": values[-1],
                }[kind]
    return bytes(raw)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_one_entity_path_equals_the_vectorised_path(seed):
    rng = random.Random(seed)
    merger = Merger(SPEC)
    now = NOW + rng.randint(0, 3 * 86_400_000_000)
    blobs = [_blob(merger, rng, now), merger.empty, None, b"[1,0,1,2.0]"]
    for at in (now, now + 1, now + 60_000_000, now + 3_600_000_000):  # same tile, next tiles (cache moves)
        together = merger.values(blobs, at)
        for i, blob in enumerate(blobs):
            alone = [column[0] for column in merger.values([blob], at)]
            expected = [column[i] for column in together]
            assert all(_same(a, b) for a, b in zip(alone, expected, strict=True)), (i, alone, expected)
