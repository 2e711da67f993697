"""The two sides of a replay, each a callable ``events frame -> rows frame`` (``Path_``): an ingest
hook (``stream_path``, ``stream_transform`` finds the one in ``ingest.yaml``) or an aggregation view's
tile script (``tile_stream_path``) for the stream side; the repo's ``backfills.py`` definition
(``batch_definition``) or Spark's training computation (``spark_batch_path``) for the batch side."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fs_platform.errors import ParityError
from fs_platform.feast_compat import online_store
from fs_platform.timeutil import utcnow

Path_ = Callable[[pd.DataFrame], pd.DataFrame]


def stream_path(
    hook_factory: Callable[[], Callable[[dict], object]], event_time: str = "event_timestamp"
) -> Path_:
    """The stream path of an ingest hook: one fresh instance, records in event-time order.

    ``hook_factory`` is ``TransformFactory.new`` of the Kafka ingestor or a hook class; a plain
    function hook is wrapped as ``lambda: fn``. The last row per (keys, event time) wins, as the
    final state of the stream for that instant.
    """

    def run(events: pd.DataFrame) -> pd.DataFrame:
        hook = hook_factory()
        rows: list[dict] = []
        ordered = events.sort_values(event_time, kind="stable")
        for record in ordered.to_dict("records"):
            record[event_time] = pd.Timestamp(record[event_time]).to_pydatetime()
            out = hook(record)
            if out is None:
                continue
            rows.extend(out if isinstance(out, list) else [out])
        return pd.DataFrame(rows)

    return run


def stream_transform(repo: str | Path, view) -> tuple[Callable[[], Callable[[dict], object]], str]:
    """The ingestor's transformation feeding ``view`` (from ``ingest.yaml``), else the reference one.

    Returns the hook factory and where it came from (for the report).
    """
    from fs_platform.plugins.kafka_ingest.config import load_ingest_config
    from fs_platform.plugins.kafka_ingest.transform import load_transform

    push = getattr(view.stream_source, "name", None)
    if (Path(repo) / "ingest.yaml").is_file():
        for spec in load_ingest_config(repo).topics:
            if spec.push_source == push and spec.transform:
                return load_transform(
                    Path(repo), spec.transform
                ).new, f"ingest.yaml topic {spec.topic}: {spec.transform}"
    raise ParityError(
        f"no stream transformation feeds view {view.name!r}",
        hint="declare one in ingest.yaml (topics[].transform) or pass --transform file.py:Name",
    )


def tile_stream_path(store, view, event_time: str = "event_timestamp") -> Path_:
    """The stream path of an aggregation view: the real tile script, into a scratch namespace of the
    online store (deleted afterwards). Events are applied in event-time order, one event time at a
    time (as offsets 0, 1, ... of one partition), and after each the keys of its events are read as of
    that instant: the value the ingestor would have served right after those events arrived."""

    def run(events: pd.DataFrame) -> pd.DataFrame:
        import uuid

        online = _redis_store(store)
        config = store.config.model_copy(update={"project": f"{store.project}-replay-{uuid.uuid4().hex[:8]}"})
        keys = [c.name for c in view.entity_columns]
        features = [f.name for f in view.features]
        ordered = events.assign(**{event_time: pd.to_datetime(events[event_time], utc=True)})
        ordered = ordered.dropna(subset=[event_time, *keys]).sort_values(event_time, kind="stable")
        table = pa.Table.from_pandas(ordered, preserve_index=False)
        times = ordered[event_time].to_numpy()
        bounds = np.flatnonzero(np.r_[True, times[1:] != times[:-1], True])
        out = []
        try:
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                part = table.slice(a, b - a)
                online.write_events(
                    config, view, part, ["replay/0"] * (b - a), np.arange(a, b), event_time, expire=False
                )
                at = pd.Timestamp(times[a])
                distinct = part.select(keys).group_by(keys).aggregate([])
                columns = {k: distinct[k].to_pylist() for k in keys}
                result = online.read_view(
                    config, view, features, columns, distinct.num_rows, int(at.value // 1000)
                )
                rows = {**columns, event_time: [at] * distinct.num_rows}
                rows.update(zip(features, result.values, strict=True))
                out.append(pd.DataFrame(rows))
        finally:
            online.teardown(config, [view], [])
        return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=[*keys, event_time])

    return run


def spark_batch_path(store, view, event_time: str = "event_timestamp") -> Path_:
    """The batch path of an aggregation view: Spark's training computation (``as_of``) over the replayed
    events, as of each event."""

    def run(events: pd.DataFrame) -> pd.DataFrame:
        from fs_platform.aggregation.spec import spec_of
        from fs_platform.plugins.delta.aggregation_as_of import as_of
        from fs_platform.plugins.delta.engine import get_engine
        from fs_platform.timeutil import microsecond_timestamps

        spark = get_engine(store.config).spark
        spec = spec_of(view)
        keys = [c.name for c in view.entity_columns]
        frame = events.assign(**{event_time: pd.to_datetime(events[event_time], utc=True)})
        requests = frame[[*keys, event_time]].drop_duplicates()
        raw = microsecond_timestamps(pa.Table.from_pandas(frame, preserve_index=False))
        wanted = microsecond_timestamps(pa.Table.from_pandas(requests, preserve_index=False))
        renamed = raw.rename_columns(
            [spec.timestamp_field if c == event_time else c for c in raw.column_names]
        )
        names = {f.name: f.name for f in view.features}
        result = as_of(
            spark.createDataFrame(wanted), event_time, keys, spec, spark.createDataFrame(renamed), names
        )
        return result.toPandas()[[*keys, event_time, *names]]

    return run


def _redis_store(store):
    from fs_platform.plugins.redis_store.online_store import RedisOnlineStore

    online = online_store(store)
    if not isinstance(online, RedisOnlineStore):
        raise ParityError("replaying an aggregation view needs the fs Redis online store (its tile script)")
    return online


def batch_definition(repo: str | Path, view: str) -> Path_:
    """The repo's batch definition of ``view`` (``backfills.py``, what ``fs backfill`` recomputes the
    offline table with) as a replay path: the events are its one input."""
    from fs_platform.backfill.definitions import BatchContext, load_repo

    definition = load_repo(Path(repo)).definitions.get(view)
    if definition is None:
        raise ParityError(
            f"feature view {view!r} has no batch definition in {Path(repo) / 'backfills.py'}",
            hint="add one (see docs/backfill.md), then rerun `fs parity replay`",
        )
    if definition.function is None or len(definition.inputs) != 1:
        raise ParityError(
            f"the batch definition of {view!r} ({definition.describe}, {len(definition.inputs)} input(s)) "
            "cannot be replayed: replay feeds one events table to a Python definition"
        )
    [name] = definition.inputs

    def run(events: pd.DataFrame) -> pd.DataFrame:
        ts = pd.to_datetime(events[definition.input_timestamp], utc=True)
        start = ts.min().to_pydatetime() if len(ts) else utcnow()
        end = ts.max().to_pydatetime() + timedelta(microseconds=1) if len(ts) else start
        out = definition.function(BatchContext(view, start, end, {name: events}))
        return out.to_pandas() if isinstance(out, pa.Table) else out

    return run
