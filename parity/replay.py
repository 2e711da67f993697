"""Replay parity: the same window of raw events through the stream path and the batch path.

    report = replay(events, stream=stream_path(hook), batch=batch_definition(repo, "my_view"),
                    view="my_view", keys=["customer_id"], features={"txn_count_1h": ValueType.INT64, ...})

Both paths are callables ``events frame -> rows frame``; rows are matched on the join keys plus the
event time, and features are compared with the same typed rules as ``fs parity check``. Run it
before shipping a new stream feature: a difference here becomes an online/offline mismatch later.
``replay_view`` takes the batch path from the repo's ``backfills.py`` (``batch_definition``), the
same definition ``fs backfill`` recomputes the offline table with. For an aggregation view both paths
come from its spec: the tile script (``tile_stream_path``) and Spark (``spark_batch_path``). The paths
are in ``fs_platform.parity.replay_paths``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from feast.value_type import ValueType

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import ParityError
from fs_platform.governance.pii import mask
from fs_platform.parity.classify import Outcome
from fs_platform.parity.compare import Tolerances, compare_column
from fs_platform.parity.replay_paths import (
    Path_,
    batch_definition,
    spark_batch_path,
    stream_path,
    stream_transform,
    tile_stream_path,
)
from fs_platform.parity.report import MASK
from fs_platform.views import feature_view

STREAM_ONLY, BATCH_ONLY = "stream_only", "batch_only"


@dataclass
class ReplayFeature:
    feature: str
    dtype: str
    compared: int = 0
    value_mismatch: int = 0
    type_mismatch: int = 0

    @property
    def matched(self) -> int:
        return self.compared - self.value_mismatch - self.type_mismatch


@dataclass
class ReplayExample:
    feature: str
    outcome: str
    entity: dict
    event_timestamp: str
    stream_value: object
    batch_value: object


@dataclass
class ReplayReport:
    view: str
    events: int
    stream_rows: int
    batch_rows: int
    stream_only: int
    batch_only: int
    features: list[ReplayFeature]
    examples: list[ReplayExample] = field(default_factory=list)
    max_mismatch_rate: float = 0.0
    stream_path: str = ""

    @property
    def mismatch_rate(self) -> float:
        rows = max(self.stream_rows, self.batch_rows, 1)
        values = sum(f.compared for f in self.features) or 1
        return max(
            (self.stream_only + self.batch_only) / rows,
            sum(f.value_mismatch + f.type_mismatch for f in self.features) / values,
        )

    @property
    def breach(self) -> bool:
        return self.mismatch_rate > self.max_mismatch_rate

    @property
    def verdict(self) -> str:
        return "breach" if self.breach else "ok"

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "view": self.view,
            "stream_path": self.stream_path,
            "events": self.events,
            "stream_rows": self.stream_rows,
            "batch_rows": self.batch_rows,
            "stream_only": self.stream_only,
            "batch_only": self.batch_only,
            "mismatch_rate": self.mismatch_rate,
            "max_mismatch_rate": self.max_mismatch_rate,
            "features": [{**vars(f), "matched": f.matched} for f in self.features],
            "examples": [vars(e) for e in self.examples],
        }


def replay(
    events: pd.DataFrame,
    *,
    stream: Path_,
    batch: Path_,
    view: str,
    keys: list[str],
    features: dict[str, ValueType],
    event_time: str = "event_timestamp",
    tolerances: Tolerances | None = None,
    sensitive: Iterable[str] = (),
    masked_keys: Iterable[str] = (),
    max_mismatch_rate: float = 0.0,
    examples: int = 5,
) -> ReplayReport:
    """``sensitive`` features' values and ``masked_keys`` (join keys of pii entities) are masked in
    examples."""
    tolerances = tolerances or Tolerances()
    sensitive, masked_keys = set(sensitive), set(masked_keys)
    s_rows, b_rows = (
        _rows(stream(events), "stream", keys, event_time),
        _rows(batch(events), "batch", keys, event_time),
    )
    on = [*keys, event_time]
    merged = s_rows.merge(b_rows, on=on, how="outer", suffixes=("__s", "__b"), indicator=True)
    both = np.flatnonzero((merged["_merge"] == "both").to_numpy())
    report = ReplayReport(
        view=view,
        events=len(events),
        stream_rows=len(s_rows),
        batch_rows=len(b_rows),
        stream_only=int((merged["_merge"] == "left_only").sum()),
        batch_only=int((merged["_merge"] == "right_only").sum()),
        features=[],
        max_mismatch_rate=max_mismatch_rate,
    )
    for side, label in (("left_only", STREAM_ONLY), ("right_only", BATCH_ONLY)):
        for i in np.flatnonzero((merged["_merge"] == side).to_numpy())[:examples]:
            report.examples.append(
                _example(merged, int(i), keys, event_time, "*", label, sensitive, masked_keys)
            )
    for name, vt in features.items():
        s_col, b_col = _column(merged, f"{name}__s"), _column(merged, f"{name}__b")
        codes, scores = compare_column(vt, s_col, b_col, both, tolerances.for_feature(view, name))
        stats = ReplayFeature(
            name,
            vt.name,
            compared=len(both),
            value_mismatch=int(np.count_nonzero(codes == Outcome.VALUE_MISMATCH)),
            type_mismatch=int(np.count_nonzero(codes == Outcome.TYPE_MISMATCH)),
        )
        report.features.append(stats)
        bad = np.flatnonzero(codes != Outcome.MATCHED)
        for j in bad[np.argsort(-scores[bad], kind="stable")][:examples]:
            label = Outcome(int(codes[j])).label
            report.examples.append(
                _example(merged, int(both[j]), keys, event_time, name, label, sensitive, masked_keys)
            )
    return report


def _rows(frame: pd.DataFrame, side: str, keys: list[str], event_time: str) -> pd.DataFrame:
    missing = [c for c in [*keys, event_time] if c not in frame.columns]
    if missing:
        raise ParityError(f"the {side} path produced no column(s) {', '.join(missing)}")
    frame = frame.copy()
    frame[event_time] = pd.to_datetime(frame[event_time], utc=True).dt.floor("us")
    return frame.drop_duplicates([*keys, event_time], keep="last").reset_index(drop=True)


def _column(merged: pd.DataFrame, name: str) -> list:
    if name not in merged.columns:
        return [None] * len(merged)
    # Python scalars, so the comparison sees int/float/str/bool as a consumer would (NaN stays NaN).
    return [None if v is pd.NA or v is None else v for v in merged[name].astype(object).tolist()]


def _example(merged, i, keys, event_time, feature, outcome, sensitive, masked_keys) -> ReplayExample:
    row = merged.iloc[i]
    s_val = row.get(f"{feature}__s") if feature != "*" else None
    b_val = row.get(f"{feature}__b") if feature != "*" else None
    if feature in sensitive:
        s_val, b_val = MASK, MASK
    entity = {k: mask(_plain(row[k])) if k in masked_keys else _plain(row[k]) for k in keys}
    return ReplayExample(feature, outcome, entity, row[event_time].isoformat(), _plain(s_val), _plain(b_val))


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def read_events(path: str | Path) -> pd.DataFrame:
    """Raw events from parquet, CSV or JSON lines (the Kafka message fields, one row per event)."""
    path = Path(path)
    if not path.is_file():
        raise ParityError(f"events file {path} not found")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".json", ".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    return pd.read_csv(path)


def replay_view(
    platform,
    view_name: str,
    *,
    events: str | Path | pd.DataFrame | None = None,
    transform: str | None = None,
    customers: int = 500,
    days: int = 2,
    seed: int = 7,
    tolerances: Tolerances | None = None,
    max_mismatch_rate: float = 0.0,
    examples: int = 5,
) -> ReplayReport:
    """Replay parity for a registered view: its stream transformation vs its batch definition
    (``backfills.py`` in the repo); for an aggregation view, its tiles (the real script, in a scratch
    namespace) vs Spark's training computation, as of each event.

    Events default to a seeded synthetic window from ``fs_platform.datagen``; ``transform`` (``file.py:Name``
    in the repo) overrides the transformation declared in ``ingest.yaml``.
    """
    from fs_platform.datagen import generate
    from fs_platform.metadata import sensitive_features
    from fs_platform.parity.targets import pii_keys

    view = feature_view(platform.store, view_name)
    aggregated = is_aggregation(view)
    if aggregated:
        if transform:
            raise ParityError(
                f"{view_name!r} is an aggregation view: it has no transform to replace",
                hint="drop --transform; the replay runs its tile script and Spark",
            )
        factory, origin = None, "tiles.lua (the aggregation spec)"
    elif transform:
        from fs_platform.plugins.kafka_ingest.transform import load_transform

        factory, origin = load_transform(Path(platform.repo_path), transform).new, transform
    else:
        factory, origin = stream_transform(platform.repo_path, view)
    if isinstance(events, pd.DataFrame):
        frame = events
    elif events is not None:
        frame = read_events(events)
    else:
        frame = generate(
            seed=seed, customers=customers, merchants=max(1, customers // 10), days=days
        ).payments
    if aggregated:
        stream, batch = tile_stream_path(platform.store, view), spark_batch_path(platform.store, view)
    else:
        stream, batch = stream_path(factory), batch_definition(platform.repo_path, view_name)
    report = replay(
        frame,
        stream=stream,
        batch=batch,
        view=view_name,
        keys=[c.name for c in view.entity_columns],
        features={f.name: f.dtype.to_value_type() for f in view.features},
        tolerances=tolerances,
        sensitive=sensitive_features(view),
        masked_keys=pii_keys(platform.store, view),
        max_mismatch_rate=max_mismatch_rate,
        examples=examples,
    )
    report.stream_path = origin
    return report
