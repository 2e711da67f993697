"""Flink engine settings: ``<repo>/flink.yaml`` (optional; every field has a default), overridable
from the CLI. See docs/flink.md."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fs_platform.config import expand_env, first_error, read_yaml
from fs_platform.errors import ConfigError

FILE_NAME = "flink.yaml"


class FlinkSettings(BaseModel):
    """Where and how the Flink job runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["local", "remote"] = "local"
    """``local``: an embedded mini-cluster in the job's process. ``remote``: submit to a running Flink
    session cluster at ``rest_address`` (its TaskManagers need the Flink environment at ``python``)."""

    rest_address: str = "127.0.0.1:8081"
    """``host:port`` of the session cluster's REST endpoint (``target: remote``)."""

    python: str | None = None
    """The Flink environment's Python interpreter (default: ``FS_FLINK_PYTHON``, else
    ``<repo root>/.venv-flink`` beside the project's own ``.venv``); on a cluster, its path on the
    TaskManagers."""

    parallelism: int = Field(1, ge=1)
    """Parallel subtasks of the job (one Kafka partition is read by one subtask)."""

    checkpoint_dir: str = ".fs/flink/checkpoints"
    """Checkpoints and savepoints (relative paths: to the repo). On a cluster: a shared file system URI."""

    checkpoint_interval_ms: int = Field(5_000, ge=100)
    """How often Flink checkpoints the Kafka positions: the most a restart replays (a replay adds
    nothing to the tiles: each event carries its offset)."""

    state_backend: Literal["hashmap", "rocksdb"] = "hashmap"
    """Flink state backend. The job's only state is the Kafka source's positions, so ``hashmap`` suffices."""

    retained_checkpoints: int = Field(3, ge=1)
    """Completed checkpoints kept on disk (they survive a kill and a cancel: ``--restore`` uses the
    newest)."""

    bundle_ms: int = Field(100, ge=1)
    """Longest a record waits in the Python worker before its batch is written: drives freshness."""

    bundle_size: int = Field(5_000, ge=1)
    """Records per batch handed to the tile writer at most."""

    metrics_port: int | None = Field(None, ge=1, le=65535)
    """Serve the ingestor's Prometheus metrics (``fs_ingest_*``) and ``/health`` from the Python worker
    of subtask ``i`` on this loopback port + ``i`` (None: off)."""

    flink_metrics_port: int | None = Field(None, ge=1, le=65535)
    """Serve Flink's own metrics (checkpoint duration, restarts, the source's lag) with Flink's
    Prometheus reporter on this port (None: off)."""


def load_flink_settings(repo: str | Path, overrides: dict | None = None) -> FlinkSettings:
    """``<repo>/flink.yaml`` if present, then ``overrides`` (None values ignored)."""
    path = Path(repo) / FILE_NAME
    data = expand_env(read_yaml(path), path) if path.is_file() else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return FlinkSettings(**data)
    except ValidationError as e:
        where, msg = first_error(e)
        raise ConfigError(f"invalid {path}: {where}: {msg}") from None
