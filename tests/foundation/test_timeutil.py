from datetime import UTC, datetime, timedelta

import pytest

from fs_platform.timeutil import parse_time

NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-29T03:00:00+02:00", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        ("2026-03-29T03:00:00Z", datetime(2026, 3, 29, 3, 0, tzinfo=UTC)),
        ("now", NOW),
        ("-2d", NOW - timedelta(days=2)),
        ("now-90m", NOW - timedelta(minutes=90)),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text, now=NOW) == expected


def test_parse_time_rejects_garbage():
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday-ish")
