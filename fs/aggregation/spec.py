"""The aggregation spec: a window feature declared once, compiled to Spark (batch) and to tiles
(the stream path and the online read). Semantics in docs/aggregations.md; in short:

* A window of span ``w`` has a tile size ``g`` (``w`` a multiple of ``g``; default: the largest of
  1s, 10s, 1m, 5m, 1h, 1d giving at least 6 tiles). Tiles are epoch-aligned in UTC:
  ``tile(t) = floor(t / g)``.
* The value at request time ``t`` (``now`` online, the entity row's timestamp offline) aggregates the
  key's events ``e`` with ``tile(e.time) >= tile(t) - w/g`` and ``e.time <= t``: the events of
  ``[floor_g(t) - w, t]``, at least ``w`` and less than ``w + g`` of history, exact at the request end.
* Functions: count, sum, mean, min, max, last, stddev (sample), approx_count_distinct (HyperLogLog,
  ``fs_platform.aggregation.sketch``). count, sum and approx_count_distinct of no events are 0; the
  others are null. Inputs are numbers or booleans (true = 1); nulls and non-finite numbers are ignored.
  ``last`` is the value of the latest event (ties: the larger value).

Each function reads a few per-tile partials ("slots": count, sum, M2, min, max, last time
and value, sketch words); a view's tile is one fixed record of float64 slots, the same in Redis and in
Spark.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import timedelta

from fs_platform.aggregation.expr import Expr, col
from fs_platform.aggregation.windows import Window, duration_label, window
from fs_platform.errors import RepoError
from fs_platform.metadata import parse_duration

TAG = "fs.aggregation"  # feature view tag holding the spec as JSON
FUNCTIONS = ("count", "sum", "mean", "min", "max", "last", "stddev", "approx_count_distinct")
# function -> slot kinds it reads: n count, s sum, q M2 (sum of squared deviations from the tile mean),
# m min, M max, t/l last, h the HyperLogLog registers (sketch.WORDS slots in a tile record)
_SLOTS = {
    "count": ("n",),
    "sum": ("s",),
    "mean": ("n", "s"),
    "min": ("m",),
    "max": ("M",),
    "last": ("t", "l"),
    "stddev": ("n", "s", "q"),
    "approx_count_distinct": ("h",),
}
EMPTY = {
    "n": 0.0,
    "s": 0.0,
    "q": 0.0,
    "m": float("inf"),
    "M": float("-inf"),
    "t": float("-inf"),
    "l": float("nan"),
    "h": 0.0,
}
ROWS = "*"  # input of count("*"): every event that passes the view's filter
COUNTS = ("count", "approx_count_distinct")  # integer features, 0 when nothing counts


@dataclass(frozen=True)
class Aggregation:
    """One function of one input over several windows: features ``<name>_<window>``.

    ``input``: a column name, an expression (``~col("approved")``) or ``"*"`` (count events).
    ``name``: feature name stem (default ``<column>_<function>``). ``tile``: tile size for all its
    windows (default per window, see ``default_tile``). ``pii``: the features' PII class.
    """

    input: str | Expr
    function: str
    windows: tuple[str, ...]
    name: str | None = None
    tile: str | None = None
    description: str | None = None
    pii: str = "none"

    def __post_init__(self):
        if self.function not in FUNCTIONS:
            raise RepoError(f"aggregation function {self.function!r}: expected one of {', '.join(FUNCTIONS)}")
        if isinstance(self.input, str) and self.input == ROWS and self.function != "count":
            raise RepoError(f'input "*" only counts events; {self.function} needs a column')
        if isinstance(self.windows, str):
            object.__setattr__(self, "windows", (self.windows,))
        object.__setattr__(self, "windows", tuple(self.windows))
        if not self.windows:
            raise RepoError(f"aggregation {self.stem}: no windows")

    @property
    def stem(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.input, Expr):
            raise RepoError(f"an aggregation of an expression ({self.input!r}) needs a name")
        return "events_count" if self.input == ROWS else f"{self.input}_{self.function}"

    @property
    def is_rows(self) -> bool:
        return isinstance(self.input, str) and self.input == ROWS

    def input_expr(self) -> Expr | None:
        if self.is_rows:
            return None
        return self.input if isinstance(self.input, Expr) else col(self.input)


@dataclass(frozen=True)
class Feature:
    name: str
    function: str
    input: int  # index into AggregationSpec.inputs (-1: count of events)
    window: Window
    description: str
    pii: str

    @property
    def dtype(self) -> str:
        return "Int64" if self.function in COUNTS else "Float64"


@dataclass(frozen=True)
class Granularity:
    tile_us: int
    tiles: int  # the most tiles before the request's tile any window of this size covers

    @property
    def tag(self) -> str:
        """Field prefix of its tiles in Redis (seconds: stable when other windows change)."""
        return str(self.tile_us // 1_000_000)


@dataclass(frozen=True, eq=False)
class AggregationSpec:
    """Everything both engines need; built from the declaration, stored as JSON in the view's tags."""

    view: str
    join_keys: tuple[str, ...]
    timestamp_field: str
    inputs: tuple[Expr, ...]  # distinct input expressions
    features: tuple[Feature, ...]
    where: Expr | None = None
    allowed_lateness_us: int = 3_600_000_000
    slots: tuple[tuple[str, int], ...] = field(default=())  # (kind, input index; -1 = events)
    granularities: tuple[Granularity, ...] = field(default=())

    def __post_init__(self):
        slots: list[tuple[str, int]] = []
        for f in self.features:
            for kind in _SLOTS[f.function]:
                if (kind, f.input) not in slots:
                    slots.append((kind, f.input))
        object.__setattr__(self, "slots", tuple(slots))
        tiles: dict[int, int] = {}
        for f in self.features:
            tiles[f.window.tile_us] = max(tiles.get(f.window.tile_us, 0), f.window.tiles)
        object.__setattr__(self, "granularities", tuple(Granularity(g, n) for g, n in sorted(tiles.items())))
        sizes = [g.tile_us for g in self.granularities]
        for small, large in zip(sizes, sizes[1:], strict=False):
            if large % small:  # a rebuild widens its range to whole tiles of the largest size
                raise RepoError(
                    f"aggregation view {self.view!r}: tile sizes must divide each other "
                    f"({small // 1_000_000}s does not divide {large // 1_000_000}s)"
                )

    def __eq__(self, other) -> bool:
        return isinstance(other, AggregationSpec) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    # -- derived ----------------------------------------------------------------------------------
    def slot(self, kind: str, input_index: int) -> int:
        return self.slots.index((kind, input_index))

    def granularity(self, tile_us: int) -> int:
        return next(i for i, g in enumerate(self.granularities) if g.tile_us == tile_us)

    @property
    def columns(self) -> set[str]:
        """Raw event columns the spec reads (besides keys and time)."""
        out = set().union(*(e.columns() for e in self.inputs)) if self.inputs else set()
        return out | (self.where.columns() if self.where is not None else set())

    def missing_columns(self, columns) -> list[str]:
        """The raw-event columns the spec reads (keys, time, inputs, filter) that ``columns`` lacks."""
        needed = [*self.join_keys, self.timestamp_field, *sorted(self.columns)]
        return [c for c in dict.fromkeys(needed) if c not in columns]

    @property
    def horizon_us(self) -> int:
        """How long an event can matter online: the longest window plus its tile."""
        return max((g.tiles + 1) * g.tile_us for g in self.granularities)

    @property
    def fingerprint(self) -> int:
        """Changes whenever the tile layout changes (slots, tile sizes, inputs, filter)."""
        layout = {
            "slots": self.slots,
            "g": [(g.tile_us, g.tiles) for g in self.granularities],
            "inputs": [e.to_obj() for e in self.inputs],
            "where": None if self.where is None else self.where.to_obj(),
            "keys": self.join_keys,
        }
        return zlib.crc32(json.dumps(layout, sort_keys=True).encode())

    # -- serialisation ------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "view": self.view,
                "join_keys": list(self.join_keys),
                "timestamp_field": self.timestamp_field,
                "inputs": [e.to_obj() for e in self.inputs],
                "where": None if self.where is None else self.where.to_obj(),
                "allowed_lateness_us": self.allowed_lateness_us,
                "features": [
                    {
                        "name": f.name,
                        "function": f.function,
                        "input": f.input,
                        "label": f.window.label,
                        "span_us": f.window.span_us,
                        "tile_us": f.window.tile_us,
                        "description": f.description,
                        "pii": f.pii,
                    }
                    for f in self.features
                ],
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str) -> AggregationSpec:
        o = json.loads(text)
        return AggregationSpec(
            view=o["view"],
            join_keys=tuple(o["join_keys"]),
            timestamp_field=o["timestamp_field"],
            inputs=tuple(Expr.from_obj(e) for e in o["inputs"]),
            where=None if o["where"] is None else Expr.from_obj(o["where"]),
            allowed_lateness_us=o["allowed_lateness_us"],
            features=tuple(
                Feature(
                    f["name"],
                    f["function"],
                    f["input"],
                    Window(f["label"], f["span_us"], f["tile_us"]),
                    f["description"],
                    f["pii"],
                )
                for f in o["features"]
            ),
        )


_DESCRIBE = {
    "count": "Number of events{of}",
    "sum": "Sum of {input}",
    "mean": "Mean of {input}",
    "min": "Minimum of {input}",
    "max": "Maximum of {input}",
    "last": "Latest value of {input}",
    "stddev": "Sample standard deviation of {input}",
    "approx_count_distinct": "Approximate number of distinct values of {input}",
}


def build_spec(
    view: str,
    join_keys: list[str],
    timestamp_field: str,
    aggregations: list[Aggregation],
    where: Expr | None = None,
    allowed_lateness: str | timedelta = "1h",
) -> AggregationSpec:
    inputs: list[Expr] = []
    keys: list[str] = []  # inputs[i].to_json(): expressions compare by their text
    features: list[Feature] = []
    for a in aggregations:
        expr = a.input_expr()
        if expr is None:
            index = -1
        else:
            if expr.to_json() not in keys:
                inputs.append(expr)
                keys.append(expr.to_json())
            index = keys.index(expr.to_json())
        for w in a.windows:
            win = window(w, a.tile)
            name = f"{a.stem}_{win.label}"
            if any(f.name == name for f in features):
                raise RepoError(f"aggregation view {view!r}: feature {name!r} is declared twice")
            what = "events" if expr is None else repr(a.input) if isinstance(a.input, Expr) else a.input
            text = a.description or _DESCRIBE[a.function].format(input=what, of="")
            tile = duration_label(timedelta(microseconds=win.tile_us))
            desc = f"{text} over the last {win.label} (tiles of {tile}; see docs/aggregations.md)."
            features.append(Feature(name, a.function, index, win, desc, a.pii))
    lateness = (
        allowed_lateness if isinstance(allowed_lateness, timedelta) else parse_duration(allowed_lateness)
    )
    return AggregationSpec(
        view,
        tuple(join_keys),
        timestamp_field,
        tuple(inputs),
        tuple(features),
        where,
        int(lateness.total_seconds() * 1_000_000),
    )


def spec_of(view) -> AggregationSpec | None:
    """The spec of an aggregation view (any Feast view object), None for other views."""
    raw = (getattr(view, "tags", None) or {}).get(TAG)
    return AggregationSpec.from_json(raw) if raw else None


def is_aggregation(view) -> bool:
    return TAG in (getattr(view, "tags", None) or {})
