"""Batch materialization engine: offline store -> Arrow batches -> the store's ordered bulk write.

    batch_engine:
      type: plugins.redis_store.engine.RedisArrowEngine

Feast's local engine turns every value into a protobuf before the online store re-encodes it;
this engine hands the offline store's Arrow result straight to ``RedisOnlineStore.write_arrow``.
It always pulls the latest row per entity in the window: the store keeps only the newest event
per key anyway (older ones would be skipped as stale), so pulling all rows only moves more data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from feast import Entity, FeatureView, utils
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel

from fs.aggregation.spec import is_aggregation
from fs.errors import ConfigError, OnlineWriteError
from fs.field_mapping import mapped_name, to_mapped_names
from plugins.redis_store.online_store import RedisOnlineStore
from plugins.redis_store.writer import WriteResult

logger = logging.getLogger(__name__)


class RedisArrowEngineConfig(FeastConfigBaseModel):
    """Batch engine config for Arrow materialization into the fs Redis store."""

    type: Literal["plugins.redis_store.engine.RedisArrowEngine"] = (
        "plugins.redis_store.engine.RedisArrowEngine"
    )
    """Batch engine type selector."""

    batch_rows: int = 50_000
    """Rows per Arrow batch handed to the online store."""


@dataclass
class RedisMaterializationJob(MaterializationJob):
    """A finished materialization of one view; ``result`` counts written / stale / expired rows."""

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
                "plugins.redis_store.online_store.RedisOnlineStore"
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

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs
    ) -> MaterializationJob:
        view = task.feature_view
        job_id = f"{view.name}-{task.start_time}-{task.end_time}"
        try:
            result = self._run(registry, task)
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

    def _run(self, registry: BaseRegistry, task: MaterializationTask) -> WriteResult:
        view = task.feature_view
        if is_aggregation(view):
            raise OnlineWriteError(
                f"{view.name!r} is an aggregation view: `feast materialize` would copy raw events as rows",
                hint=f"rebuild its tiles with `fs materialize START END` (or `fs backfill {view.name} --to online`)",
            )
        entities = [registry.get_entity(name, task.project) for name in view.entities]
        join_keys, features, ts_col, created_col = utils._get_column_names(view, entities)
        source = view.batch_source
        job = self.offline_store.pull_latest_from_table_or_query(
            config=self.repo_config,
            data_source=source,
            join_key_columns=join_keys,
            feature_name_columns=features,
            timestamp_field=ts_col,
            created_timestamp_column=created_col,
            start_date=task.start_time,
            end_date=task.end_time,
        )
        table = job.to_arrow()
        table = to_mapped_names(table, source)
        ts_col = mapped_name(source, ts_col)
        created_col = mapped_name(source, created_col) if created_col else None
        progress = task.tqdm_builder(table.num_rows) if task.tqdm_builder else None
        result = WriteResult()
        for batch in table.to_batches(max_chunksize=self.batch_rows):
            result += self.online_store.write_arrow(self.repo_config, view, batch, ts_col, created_col)
            if progress:
                progress.update(batch.num_rows)
        if progress:
            progress.close()
        return result
