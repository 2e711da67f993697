"""Feast's batch engine for the fs Redis store: ``feast materialize`` / ``store.materialize`` run the
same runner as ``fs materialize``.

    batch_engine:
      type: fs_platform.plugins.redis_store.engine.RedisArrowEngine

Each view's task is handed to the backfill runner (``fs_platform.backfill.runner.Backfiller.materialize``),
so a user of either CLI gets one semantics (docs/backfill.md, "Feast's materialize"): the range is half-open
``[start, end)`` (a row at exactly ``end`` belongs to the next run), cut into chunks recorded in the
backfill ledger, run under the view's lease, checked by the quality gate, and written in event-time
order through ``RedisOnlineStore.write_arrow`` (Arrow, no protobuf per value). Aggregation views are
refused with a pointer to ``fs materialize`` (their tiles are rebuilt from raw events, not copied).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from feast import Entity, FeatureView
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import ConfigError, OnlineWriteError
from fs_platform.plugins.redis_store.online_store import RedisOnlineStore
from fs_platform.plugins.redis_store.writer import WriteResult

logger = logging.getLogger(__name__)


class RedisArrowEngineConfig(FeastConfigBaseModel):
    """Batch engine config for Arrow materialization into the fs Redis store."""

    type: Literal["fs_platform.plugins.redis_store.engine.RedisArrowEngine"] = (
        "fs_platform.plugins.redis_store.engine.RedisArrowEngine"
    )
    """Batch engine type selector."""

    batch_rows: int = 50_000
    """Accepted for existing configs and unused: each chunk goes to the online store's ``write_arrow``
    whole, which sends it in ``online_store.write_batch_size`` batches."""


@dataclass
class RedisMaterializationJob(MaterializationJob):
    """A finished materialization of one view; ``result`` counts rows written and skipped (``skipped_stale``:
    older than the stored value or past the ttl, as the runner counts them)."""

    _job_id: str
    _status: MaterializationJobStatus
    result: WriteResult
    _error: BaseException | None = None

    def status(self) -> MaterializationJobStatus:
        return self._status

    def error(self) -> BaseException | None:
        return self._error

    def should_be_retried(self) -> bool:
        return False

    def job_id(self) -> str:
        return self._job_id

    def url(self) -> str | None:
        return None


class RedisArrowEngine(ComputeEngine):
    def __init__(self, *, repo_config, offline_store, online_store, batch_rows: int = 50_000, **kwargs):
        super().__init__(repo_config=repo_config, offline_store=offline_store, online_store=online_store)
        if not isinstance(online_store, RedisOnlineStore):
            raise ConfigError(
                "batch_engine RedisArrowEngine needs online_store type "
                "fs_platform.plugins.redis_store.online_store.RedisOnlineStore"
            )
        self.batch_rows = batch_rows

    def update(
        self,
        project: str,
        views_to_delete: Sequence[FeatureView],
        views_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
    ):
        """Nothing to provision: the engine runs in-process."""

    def teardown_infra(self, project: str, fvs: Sequence[FeatureView], entities: Sequence[Entity]):
        """Nothing to tear down (the online store owns the data)."""

    @property
    def supports_batch(self) -> bool:
        """Feast hands every view's task to ``materialize`` in one call, so they share one platform."""
        return True

    def materialize(self, registry: BaseRegistry, tasks, **kwargs) -> list[MaterializationJob]:
        """One platform (registry, Redis clients, Spark session) for all the views of one call, closed
        when they are done: opening one per view cost more than copying a small view."""
        from fs_platform.platform import Platform

        tasks = [tasks] if isinstance(tasks, MaterializationTask) else list(tasks)
        with Platform.for_config(self.repo_config) as platform:
            return [self._materialize_one(registry, task, platform=platform) for task in tasks]

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, platform, **kwargs
    ) -> MaterializationJob:
        view = task.feature_view
        job_id = f"{view.name}-{task.start_time}-{task.end_time}"
        try:
            result = self._run(task, platform)
        except Exception as e:  # Feast reports the job's error; keep the type for the caller
            logger.error(
                "materialization of %s failed: %s",
                view.name,
                type(e).__name__,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            return RedisMaterializationJob(job_id, MaterializationJobStatus.ERROR, WriteResult(), e)
        logger.info("materialized %s: %s", view.name, result)
        return RedisMaterializationJob(job_id, MaterializationJobStatus.SUCCEEDED, result)

    def _run(self, task: MaterializationTask, platform) -> WriteResult:
        from fs_platform.backfill.runner import Backfiller

        view = task.feature_view
        if is_aggregation(view):
            raise OnlineWriteError(
                f"{view.name!r} is an aggregation view: `feast materialize` would copy raw events as rows",
                hint=f"rebuild its tiles with `fs materialize START END` "
                f"(or `fs backfill {view.name} --to online`)",
            )
        bar = _ChunkBar(task.tqdm_builder)
        try:
            runs = Backfiller(platform).materialize(
                [view.name], task.start_time, task.end_time, progress=bar.on_event
            )
        finally:
            bar.close()
        chunks = [c for run in runs for c in run.chunks]
        # The runner counts stale and expired rows together (``rows_skipped``).
        return WriteResult(sum(c.rows_written for c in chunks), sum(c.rows_skipped for c in chunks))


class _ChunkBar:
    """Feast's progress bar (``feast materialize``), advanced per finished chunk."""

    def __init__(self, builder):
        self._builder = builder
        self._bar = None

    def on_event(self, ev) -> None:
        if self._builder is None:
            return
        if self._bar is None:
            self._bar = self._builder(ev.chunks_total)
        if ev.stage == "done":
            self._bar.update(ev.chunks)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
