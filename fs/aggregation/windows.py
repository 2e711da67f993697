"""Windows of an aggregation: a span and its tile size (the span a multiple of the tile; default: the
largest standard tile size giving at least 6 tiles), and the labels they carry in feature names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fs_platform.errors import RepoError
from fs_platform.metadata import parse_duration

_TILE_CHOICES_S = (1, 10, 60, 300, 3600, 86400)
_MIN_TILES = 6


def duration_label(span: timedelta) -> str:
    s = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def default_tile(span: timedelta) -> timedelta:
    """The largest standard tile size giving at least 6 tiles per window (and dividing it)."""
    s = int(span.total_seconds())
    best = 1
    for g in _TILE_CHOICES_S:
        if s % g == 0 and s // g >= _MIN_TILES:
            best = g
    return timedelta(seconds=best)


@dataclass(frozen=True)
class Window:
    label: str  # "10m", as it appears in feature names
    span_us: int
    tile_us: int

    @property
    def tiles(self) -> int:
        """w / g: tiles before the request's own tile that the window covers."""
        return self.span_us // self.tile_us


def window(span: str | timedelta, tile: str | timedelta | None = None) -> Window:
    span_td = span if isinstance(span, timedelta) else parse_duration(span)
    if span_td.total_seconds() < 1 or span_td.total_seconds() % 1:
        raise RepoError(f"window {span!r}: must be a whole number of seconds, at least 1s")
    tile_td = (
        default_tile(span_td)
        if tile is None
        else tile
        if isinstance(tile, timedelta)
        else parse_duration(tile)
    )
    span_s, tile_s = int(span_td.total_seconds()), int(tile_td.total_seconds())
    if tile_s < 1 or span_s % tile_s:
        raise RepoError(
            f"window {duration_label(span_td)}: tile {duration_label(tile_td)} must divide the window"
        )
    label = span.strip() if isinstance(span, str) else duration_label(span_td)  # "24h" stays "24h"
    return Window(label, span_s * 1_000_000, tile_s * 1_000_000)
