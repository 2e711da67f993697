"""Chunk planning: the UTC grid, DST and month boundaries, non-UTC input."""

from datetime import UTC, timedelta

import pytest

from fs_platform.backfill.intervals import covered, merge, subtract
from fs_platform.backfill.model import Interval
from fs_platform.backfill.plan import compute_spans, grid_chunks
from fs_platform.errors import ConfigError
from fs_platform.timeutil import parse_time


def t(text):
    return parse_time(text)


def test_chunks_align_to_utc_midnight_and_cover_the_range_exactly():
    chunks = grid_chunks(t("2026-11-01T06:00:00Z"), t("2026-11-03T12:00:00Z"), timedelta(days=1))
    assert [str(c) for c in chunks] == [
        "[2026-11-01T06:00:00+00:00, 2026-11-02T00:00:00+00:00)",
        "[2026-11-02T00:00:00+00:00, 2026-11-03T00:00:00+00:00)",
        "[2026-11-03T00:00:00+00:00, 2026-11-03T12:00:00+00:00)",
    ]


def test_non_utc_range_across_a_dst_change_is_converted_to_exact_utc_instants():
    # New York springs forward on 2026-03-08: that local day is 23 hours long.
    start, end = t("2026-03-08T00:00:00-05:00"), t("2026-03-09T00:00:00-04:00")
    chunks = grid_chunks(start, end, timedelta(days=1))
    assert start.tzinfo == UTC and start.hour == 5
    assert sum((c.length for c in chunks), timedelta()) == timedelta(hours=23)
    assert [(c.start.hour, c.end.hour) for c in chunks] == [(5, 0), (0, 4)]


def test_month_boundary_and_hourly_chunks():
    chunks = grid_chunks(t("2026-01-31T22:00:00Z"), t("2026-02-01T02:00:00Z"), timedelta(hours=1))
    assert len(chunks) == 4
    assert chunks[2].start == t("2026-02-01T00:00:00Z")
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))


def test_bad_ranges_are_refused():
    with pytest.raises(ConfigError):
        grid_chunks(t("2026-11-02"), t("2026-11-01"), timedelta(days=1))
    with pytest.raises(ConfigError):
        grid_chunks(t("2026-11-01"), t("2026-11-02"), timedelta(0))


def test_interval_union_coverage_and_gaps():
    a = Interval(t("2026-11-01"), t("2026-11-02"))
    b = Interval(t("2026-11-02"), t("2026-11-03"))
    c = Interval(t("2026-11-05"), t("2026-11-06"))
    merged = merge([c, b, a])
    assert merged == [Interval(a.start, b.end), c]
    assert covered(Interval(t("2026-11-01T12:00:00Z"), t("2026-11-02T12:00:00Z")), merged)
    assert not covered(Interval(t("2026-11-02"), t("2026-11-05T01:00:00Z")), merged)
    assert subtract(Interval(t("2026-11-01"), t("2026-11-07")), merged) == [
        Interval(t("2026-11-03"), t("2026-11-05")),
        Interval(t("2026-11-06"), t("2026-11-07")),
    ]


def test_compute_spans_group_adjacent_chunks_evenly_and_respect_gaps_and_row_budget():
    day = timedelta(days=1)
    chunks = grid_chunks(t("2026-11-01"), t("2026-12-01"), day)
    spans = compute_spans(chunks, 7)
    assert [s.length for s in spans] == [6 * day] * 5  # 30 chunks, at most 7 a pass: five passes of 6
    assert spans[0].start == chunks[0].start and spans[-1].end == chunks[-1].end
    assert compute_spans(chunks, 1) == chunks  # 1: one pass per chunk (no grouping)
    # A done chunk (not in the list) breaks adjacency: passes never read across it.
    gap = chunks[:3] + chunks[4:6]
    assert compute_spans(gap, 7) == [
        Interval(chunks[0].start, chunks[2].end),
        Interval(chunks[4].start, chunks[5].end),
    ]
    # Row budget: a pass whose (lookback-widened) estimate is over budget is halved until it fits.
    rows = lambda iv: int((iv.end - iv.start) / day) * 100 + 100  # noqa: E731  (100 rows/day + 1 day lookback)
    assert [s.length for s in compute_spans(chunks[:8], 8, max_rows=400, estimate=rows)] == [2 * day] * 4
    assert [s.length for s in compute_spans(chunks[:8], 8, max_rows=None, estimate=rows)] == [8 * day]
    assert compute_spans(chunks[:2], 7, max_rows=1, estimate=rows) == chunks[:2]  # one chunk always fits
    with pytest.raises(ConfigError):
        compute_spans(chunks, 0)
