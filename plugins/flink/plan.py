"""What a Flink job runs (pure Python, no pyflink): the selected aggregation views, the topics that feed
them, and the restore rules.

A job's manifest (``<checkpoint_dir>/job.json``) records each view's tile-layout fingerprint and the
topics. Restoring a checkpoint or savepoint is compatible when every view of the new job has the same
fingerprint as when it was taken and the topics are the same: the Kafka positions in the checkpoint then
mean the same thing for every view's tiles. Otherwise the restore is refused with the way out (rebuild
the tiles from Delta, start fresh)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fs_platform.aggregation.spec import spec_of
from fs_platform.errors import ConfigError
from fs_platform.plugins.kafka_ingest.config import IngestConfig

MANIFEST = "job.json"
SAVEPOINTS = "savepoints"


class RestoreRefused(ConfigError):
    """A checkpoint or savepoint taken for another spec or other topics."""


@dataclass(frozen=True)
class JobPlan:
    views: dict[str, int]  # view -> tile layout fingerprint
    topics: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"views": self.views, "topics": list(self.topics)}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> JobPlan:
        o = json.loads(text)
        return JobPlan({k: int(v) for k, v in o["views"].items()}, tuple(o["topics"]))


def plan_job(store, config: IngestConfig, views: list[str] | None) -> JobPlan:
    """The aggregation views to run (``views``, or all those fed by a declared topic) and their topics."""
    from feast.data_source import PushSource

    fed: dict[str, list] = {}  # topic -> its aggregation views
    for t in config.topics:
        fed[t.topic] = [
            v
            for v in store.list_feature_views()
            if isinstance(v.stream_source, PushSource)
            and v.stream_source.name == t.push_source
            and spec_of(v) is not None
            and v.online
        ]
    available = {v.name: v for vs in fed.values() for v in vs}
    wanted = sorted(available) if not views else list(dict.fromkeys(views))
    unknown = [v for v in wanted if v not in available]
    if unknown:
        raise ConfigError(
            f"not an online aggregation view fed by a topic of ingest.yaml: {', '.join(unknown)}",
            hint="the Flink engine runs aggregation views; available: "
            + (", ".join(sorted(available)) or "none"),
        )
    if not wanted:
        raise ConfigError("no topic of ingest.yaml feeds an online aggregation view", hint="run `fs apply`")
    topics = tuple(t for t, vs in fed.items() if any(v.name in wanted for v in vs))
    return JobPlan({v: spec_of(available[v]).fingerprint for v in wanted}, topics)


def check_restore(saved: JobPlan, plan: JobPlan, point: str) -> None:
    """Raise ``RestoreRefused`` unless ``plan`` can continue from a checkpoint taken for ``saved``."""
    changed = sorted(v for v in plan.views if v in saved.views and saved.views[v] != plan.views[v])
    added = sorted(v for v in plan.views if v not in saved.views)
    hint = (
        "rebuild the tiles from Delta (`fs materialize START END` over the longest window), then start "
        "without the checkpoint: `fs stream run --engine flink --fresh`"
    )
    if changed:
        raise RestoreRefused(
            f"cannot restore {point}: the tile layout of {', '.join(changed)} changed since it was "
            "taken (its tiles would mix two specs)",
            hint=hint,
        )
    if added:
        raise RestoreRefused(
            f"cannot restore {point}: {', '.join(added)} is new since it was taken (its tiles would "
            "miss every event before it)",
            hint=hint,
        )
    if set(plan.topics) != set(saved.topics):
        raise RestoreRefused(
            f"cannot restore {point}: it was taken reading topics {', '.join(saved.topics)}, this "
            f"job reads {', '.join(plan.topics)}",
            hint=hint,
        )


def latest_restore_point(checkpoint_dir: Path) -> Path | None:
    """The newest completed checkpoint (``<job id>/chk-N``) or savepoint under ``checkpoint_dir``."""
    if not checkpoint_dir.is_dir():
        return None
    points = [m.parent for m in checkpoint_dir.glob("*/chk-*/_metadata")]
    points += [m.parent for m in (checkpoint_dir / SAVEPOINTS).glob("*/_metadata")]
    return max(points, key=lambda p: (p / "_metadata").stat().st_mtime, default=None)


def read_manifest(checkpoint_dir: Path) -> JobPlan | None:
    path = checkpoint_dir / MANIFEST
    return JobPlan.from_json(path.read_text()) if path.is_file() else None


def write_manifest(checkpoint_dir: Path, plan: JobPlan) -> None:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint_dir / (MANIFEST + ".tmp")
    tmp.write_text(plan.to_json())
    tmp.replace(checkpoint_dir / MANIFEST)
