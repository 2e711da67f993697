"""The served-feature log as ``skew`` reads it: where it is, one feature service's rows in a window,
a seeded sample of them, and their JSON columns decoded (``Parsed``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

from fs_platform.errors import ParityError
from fs_platform.parity.targets import Target


def log_location(repo_path: str | Path, table: str | None = None) -> str:
    """The served-feature log's location: ``table``, else ``served_log.path`` of ``<repo>/serve.yaml``."""
    from fs_platform.plugins.delta.tables import resolve_path
    from fs_platform.plugins.serving.settings import load

    return resolve_path(table or load(Path(repo_path)).served_log.path, repo_path)


def read_log(location: str, feature_service: str, start: datetime, end: datetime) -> pa.Table:
    """Logged rows of one feature service served in ``[start, end)``."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(location)
    except TableNotFoundError:
        raise ParityError(
            f"no served-feature log at {location}",
            hint="enable it with served_log.sample in serve.yaml (docs/serving.md), or pass --table",
        ) from None
    days, day = [], start.date()
    while day <= end.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    ts = pa.timestamp("us", tz="UTC")
    where = (
        ds.field("served_date").isin(days)
        & (ds.field("feature_service") == feature_service)
        & (ds.field("served_at") >= pa.scalar(start, ts))
        & (ds.field("served_at") < pa.scalar(end, ts))
    )
    return table.to_pyarrow_dataset().to_table(filter=where)


def sample_rows(logged: pa.Table, max_rows: int, seed: int) -> pa.Table:
    if logged.num_rows <= max_rows:
        return logged
    picked = sorted(random.Random(seed).sample(range(logged.num_rows), max_rows))
    return logged.take(pa.array(picked))


@dataclass
class Parsed:
    """The sampled log rows, JSON columns decoded."""

    request_id: list[str]
    row: list[int]
    served_us: np.ndarray
    entities: list[dict]
    features: list[dict]
    statuses: list[dict]
    event_us: list[dict]

    @classmethod
    def of(cls, rows: pa.Table) -> Parsed:
        def js(name):
            return [orjson.loads(x) for x in rows[name].to_pylist()]

        served = (
            rows["served_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
            if rows.num_rows
            else np.zeros(0)
        )
        return cls(
            rows["request_id"].to_pylist(),
            rows["row"].to_pylist(),
            served.astype(np.int64),
            js("entities"),
            js("features"),
            js("statuses"),
            js("event_us"),
        )

    def name(self, i: int, target: Target, feature: str) -> str:
        full = f"{target.name}__{feature}"
        return full if full in self.features[i] else feature


def keyed(parsed: Parsed, i: int, target: Target, pii_keys) -> bool:
    ents = parsed.entities[i]
    return all(k in ents and k not in pii_keys for k in target.join_keys)


def served_event(parsed: Parsed, i: int, t: Target) -> int | None:
    """The served event time of the view's row (its features share it): the first present one."""
    for f in t.features:
        us = parsed.event_us[i].get(parsed.name(i, t, f))
        if us:
            return int(us)
    return None
