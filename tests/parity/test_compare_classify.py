"""Unit rules: typed comparison, tolerances, and the classification matrix (no servers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from feast.value_type import ValueType as V

from fs_platform.parity.classify import (
    ABSENT,
    COMPARE,
    COMPARE_STALE,
    HELD_EXPIRED,
    SERVED,
    Outcome,
    RowSides,
    classify_rows,
)
from fs_platform.parity.compare import Tolerance, Tolerances, compare_column

M, VM, TM = Outcome.MATCHED, Outcome.VALUE_MISMATCH, Outcome.TYPE_MISMATCH


def _cmp(vt, online, offline, tol=Tolerance()):
    codes, _ = compare_column(vt, online, offline, np.arange(len(online)), tol)
    return [Outcome(int(c)) for c in codes]


def test_ints_strings_bools_are_exact_and_typed():
    assert _cmp(V.INT64, [1, 2, None, True, "3"], [1, 3, None, 1, 3]) == [M, VM, M, TM, TM]
    assert _cmp(V.STRING, ["NG", "KE", None, 5], ["NG", "ke", "GH", "5"]) == [M, VM, VM, TM]
    assert _cmp(V.BOOL, [True, False, 1], [True, True, True]) == [M, VM, TM]


def test_floats_use_absolute_or_relative_tolerance():
    tol = Tolerance(abs_tol=0.01, rel_tol=0.0)
    assert _cmp(V.DOUBLE, [1.0, 1.005, 1.02, 3], [1.0, 1.0, 1.0, 3.0], tol) == [M, M, VM, M]
    rel = Tolerance(abs_tol=0.0, rel_tol=1e-3)
    assert _cmp(V.DOUBLE, [1000.5, 1002.0], [1000.0, 1000.0], rel) == [M, VM]
    assert _cmp(V.DOUBLE, ["1.0"], [1.0]) == [TM]


def test_null_and_nan_are_explicit():
    nan = math.nan
    assert _cmp(V.DOUBLE, [None, nan, nan, None, 1.0, math.inf], [None, nan, 1.0, nan, None, math.inf]) == [
        M,
        M,
        VM,
        VM,
        VM,
        M,
    ]
    assert _cmp(V.DOUBLE, [None, nan], [nan, None], Tolerance(nan_is_null=True)) == [M, M]


def test_tolerance_specs_parse_with_overrides():
    t = Tolerances.parse(
        ["rel=1e-6", "avg_amount_24h:abs=0.001", "merchant_risk_daily.txn_amount_1d:abs=0.5,rel=0"]
    )
    assert t.default == Tolerance(abs_tol=1e-9, rel_tol=1e-6)
    assert t.for_feature("customer_txn_aggregates", "avg_amount_24h").abs_tol == 0.001
    assert t.for_feature("merchant_risk_daily", "txn_amount_1d") == Tolerance(0.5, 0.0)
    assert t.for_feature("merchant_risk_daily", "avg_ticket_1d") == t.default
    for bad in ["abs", "abs=x", "foo=1", "abs=-1"]:
        with pytest.raises(ValueError):
            Tolerances.parse([bad])


HOUR = 3_600_000_000
NOW = 1_000 * HOUR
TTL = 24 * HOUR
LAG = HOUR // 4


def _classify(on_state, on_us, off_present, off_us):
    sides = RowSides(
        np.array([on_state], np.int8),
        np.array([on_us], np.int64),
        np.array([off_present]),
        np.array([off_us], np.int64),
    )
    out, tolerated = classify_rows(sides, NOW, TTL, LAG, future_us=NOW + 60_000_000)
    return int(out[0]), bool(tolerated[0])


@pytest.mark.parametrize(
    ("online", "offline", "expected"),
    [
        ((SERVED, NOW - HOUR), (True, NOW - HOUR), (COMPARE, False)),
        ((SERVED, NOW - 2 * HOUR), (True, NOW - HOUR), (Outcome.ONLINE_STALE, False)),
        ((HELD_EXPIRED, NOW - 30 * HOUR), (True, NOW - HOUR), (Outcome.ONLINE_STALE, False)),
        ((ABSENT, 0), (True, NOW - HOUR), (Outcome.MISSING_ONLINE, False)),
        ((SERVED, NOW - 60_000_000), (True, NOW - HOUR), (Outcome.ONLINE_AHEAD, True)),
        ((SERVED, NOW - 60_000_000), (False, 0), (Outcome.ONLINE_AHEAD, True)),
        ((SERVED, NOW - 2 * HOUR), (True, NOW - 3 * HOUR), (Outcome.MISSING_OFFLINE, False)),
        ((SERVED, NOW - 2 * HOUR), (False, 0), (Outcome.MISSING_OFFLINE, False)),
        ((SERVED, NOW - 30 * HOUR), (True, NOW - 30 * HOUR), (Outcome.TTL_EXPIRED, False)),
        ((HELD_EXPIRED, NOW - 30 * HOUR), (True, NOW - 30 * HOUR), (Outcome.TTL_EXPIRED, True)),
        ((ABSENT, 0), (True, NOW - 30 * HOUR), (Outcome.TTL_EXPIRED, True)),
        ((ABSENT, 0), (False, 0), (Outcome.MATCHED, False)),
        # an event later than the read (+ skew): from the future, a breach whatever offline holds
        ((SERVED, NOW + 5 * HOUR), (True, NOW - HOUR), (Outcome.ONLINE_FUTURE, False)),
        ((SERVED, NOW + 5 * HOUR), (False, 0), (Outcome.ONLINE_FUTURE, False)),
        ((SERVED, NOW + 30_000_000), (False, 0), (Outcome.ONLINE_AHEAD, True)),  # within the skew
    ],
)
def test_classification_matrix(online, offline, expected):
    assert _classify(*online, *offline) == (int(expected[0]), expected[1])


def test_no_ttl_means_nothing_expires():
    sides = RowSides(
        np.array([SERVED], np.int8), np.array([1], np.int64), np.array([True]), np.array([1], np.int64)
    )
    out, _ = classify_rows(sides, NOW, None, LAG)
    assert out[0] == COMPARE


def test_same_event_with_an_older_online_created_time_is_compared_as_possibly_stale():
    """Created times only matter at equal event times: the older online write of that event may be
    stale (values decide); an equal or newer online created time, or none known, is a plain compare."""
    event = 1_000
    n = 4
    sides = RowSides(
        np.full(n, SERVED, np.int8),
        np.full(n, event, np.int64),
        np.ones(n, bool),
        np.full(n, event, np.int64),
        online_created_us=np.array([5, 9, 9, 9], np.int64),
        offline_created_us=np.array([9, 9, 5, np.iinfo(np.int64).min], np.int64),
    )
    out, tolerated = classify_rows(sides, as_of_us=2_000, ttl_us=None, allowed_lag_us=0)
    assert out.tolist() == [COMPARE_STALE, COMPARE, COMPARE, COMPARE] and not tolerated.any()
    unknown = RowSides(sides.online_state, sides.online_us, sides.offline_present, sides.offline_us)
    assert classify_rows(unknown, 2_000, None, 0)[0].tolist() == [COMPARE] * n


def test_vectorised_path_agrees_with_the_per_value_rules():
    """No nulls and valid types take the numpy path; it must give the same answers."""
    nan = math.nan
    tol = Tolerance(abs_tol=0.01, rel_tol=0.0)
    assert _cmp(V.DOUBLE, [1.0, 1.005, 1.02, 3, nan, nan], [1.0, 1.0, 1.0, 3.0, nan, 2.0], tol) == [
        M,
        M,
        VM,
        M,
        M,
        VM,
    ]
    assert _cmp(V.INT64, [1, 2, 2**40], [1, 3, 2**40]) == [M, VM, M]
    assert _cmp(V.STRING, ["NG", "KE"], ["NG", "ke"]) == [M, VM]
    assert _cmp(V.BOOL, [True, False], [True, True]) == [M, VM]


def test_an_infinity_matches_only_itself_on_both_paths():
    inf = math.inf
    rel = Tolerance(abs_tol=0.0, rel_tol=1e-3)
    # numpy path (no nulls) and per-value path (a null forces it) must agree
    assert _cmp(V.DOUBLE, [inf, -inf, inf, 1.0], [1.0, inf, inf, -inf], rel) == [VM, VM, M, VM]
    assert _cmp(V.DOUBLE, [inf, -inf, inf, 1.0, None], [1.0, inf, inf, -inf, None], rel) == [VM, VM, M, VM, M]


READ = NOW + 45 * 60_000_000  # a check pinned 45 minutes in the past (the runbook's incident as_of)


@pytest.mark.parametrize(
    ("online", "offline", "expected"),
    [
        # live at as_of, its ttl ran out before the read: Redis dropped the key since, not a breach
        ((ABSENT, 0), (True, NOW - TTL + 10 * 60_000_000), (Outcome.TTL_EXPIRED, True)),
        # live at as_of and still live at the read: really missing
        ((ABSENT, 0), (True, NOW - HOUR), (Outcome.MISSING_ONLINE, False)),
        # written after as_of (online is read live, offline is cut at as_of): tolerated whatever its age
        ((SERVED, NOW + 5 * 60_000_000), (True, NOW - 3 * HOUR), (Outcome.ONLINE_AHEAD, True)),
        # before as_of, within the lag at as_of but not at the read: the offline copy should be there now
        ((SERVED, NOW - 10 * 60_000_000), (True, NOW - 3 * HOUR), (Outcome.MISSING_OFFLINE, False)),
    ],
)
def test_a_past_as_of_is_classified_against_the_time_of_the_read(online, offline, expected):
    """#14.7: online keeps no history; the read happens after as_of."""
    sides = RowSides(
        np.array([online[0]], np.int8),
        np.array([online[1]], np.int64),
        np.array([offline[0]]),
        np.array([offline[1]], np.int64),
    )
    out, tolerated = classify_rows(sides, NOW, TTL, LAG, future_us=READ + 60_000_000, read_us=READ)
    assert (int(out[0]), bool(tolerated[0])) == (int(expected[0]), expected[1])


def test_ahead_and_lost_details_never_contradict_themselves():
    """#14.7: "online event 24m newer than offline, within the allowed lag 15m" said within and 24m > 15m."""
    from fs_platform.parity.check_examples import detail

    minute = 60_000_000
    ahead = detail(
        Outcome.ONLINE_AHEAD, SERVED, NOW - 10 * minute, NOW - 34 * minute, 1.0, "DOUBLE", NOW, TTL, LAG, NOW
    )
    assert ahead == "online event 10m old, within the allowed lag 15m; offline's newest row is 24m older"
    since = detail(
        Outcome.ONLINE_AHEAD, SERVED, NOW + 24 * minute, NOW - minute, 1.0, "DOUBLE", NOW, TTL, LAG, READ
    )
    assert since.startswith("online event is 24m after as_of: written since")
    lost = detail(
        Outcome.MISSING_OFFLINE,
        SERVED,
        NOW - 24 * minute,
        NOW - 48 * minute,
        1.0,
        "DOUBLE",
        NOW,
        TTL,
        LAG,
        NOW,
    )
    assert lost == (
        "online event 24m old, more than the allowed lag 15m, is not in the offline table "
        "(its newest row is 24m older)"
    )
    expired = detail(
        Outcome.TTL_EXPIRED, ABSENT, None, NOW - TTL + 10 * minute, None, "DOUBLE", NOW, TTL, LAG, READ
    )
    assert "ran out 35m before the online read" in expired and "not checkable" in expired
