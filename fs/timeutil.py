"""Time parsing helpers. Everything the platform stores or compares is UTC-aware."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fs.metadata import parse_duration

_RELATIVE = re.compile(r"^(now)?\s*-\s*(\d+[smhdw])$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str | datetime, *, now: datetime | None = None) -> datetime:
    """``2026-11-01``, ISO 8601 with or without offset, ``now``, ``-2d`` / ``now-2d`` -> UTC datetime.

    A naive input is taken as UTC; an input with an offset is converted to UTC.
    """
    if isinstance(text, datetime):
        return text.replace(tzinfo=UTC) if text.tzinfo is None else text.astimezone(UTC)
    raw = text.strip()
    now = now or utcnow()
    if raw == "now":
        return now
    m = _RELATIVE.match(raw)
    if m:
        return now - parse_duration(m.group(2))
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use 2026-11-01, 2026-11-01T12:00:00+02:00, now or -2d)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
