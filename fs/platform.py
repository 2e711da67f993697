"""``Platform``: the one entry object for notebooks, the CLI and CI.

    from fs_platform import Platform
    p = Platform("feature_repo", env="dev")
    p.apply()
    p.materialize("2026-11-01", "2026-11-02")
    training = p.store.get_historical_features(entity_df, features=...).to_df()
    p.close()  # or: with Platform("feature_repo") as p: ...

Every method returns a typed result and never prints; the CLI renders results (and closes the
platform when the command ends).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

from fs_platform import policy
from fs_platform import repo as repo_mod
from fs_platform.apply_checks import check_schemas, on_demand_error, validate_sources
from fs_platform.config import DEFAULT_ENV, load_config, resolve_repo
from fs_platform.errors import ConfigError, PolicyError, RepoError
from fs_platform.locks import registry_lock
from fs_platform.materialize_result import MaterializeResult, Progress, chunk_progress, materialize_result
from fs_platform.registry_diff import ApplyResult, PlanResult, changes
from fs_platform.timeutil import parse_range, parse_time
from fs_platform.views import feature_view, feature_views

log = logging.getLogger(__name__)


class Platform:
    """A feature repo in one environment: its Feast store plus the platform's operations."""

    def __init__(self, repo: str | os.PathLike | None = None, env: str = DEFAULT_ENV):
        self.repo_path: Path = resolve_repo(repo)
        self.env = env
        self.config = load_config(self.repo_path, env)
        self._spark_before = _open_spark_sessions()

    @classmethod
    def for_config(cls, config, env: str = DEFAULT_ENV) -> Platform:
        """A Platform over an already loaded Feast ``RepoConfig`` (its ``repo_path`` is the repo
        folder): for code that Feast hands a config, such as the batch engine behind ``feast materialize``."""
        platform = cls.__new__(cls)
        platform.repo_path = Path(config.repo_path or ".").resolve()
        platform.env = env
        platform.config = config
        platform._spark_before = _open_spark_sessions()
        return platform

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close what this platform opened: its store's clients (online store connections, registry
        refresh thread and SQL connections) and the Spark sessions opened since it was created.
        Spark sessions that were open before it stay (another platform in this process may use
        them); so does the embedded Sail server, a process-wide resource. Safe to call twice; a closed
        platform reopens what it needs if used again."""
        store = self.__dict__.pop("store", None)
        if store is not None:
            store.close()
        if "fs_platform.plugins.delta.engine" in sys.modules:
            from fs_platform.plugins.delta.engine import stop_session

            for session in _open_spark_sessions():
                if not any(session is kept for kept in self._spark_before):
                    stop_session(session)
        self._spark_before = _open_spark_sessions()

    @property
    def project(self) -> str:
        return self.config.project

    @cached_property
    def store(self):
        """The Feast ``FeatureStore`` for this repo and environment (``fs_platform.store.FsFeatureStore``: a
        bad feature reference raises ``UnknownFeatureError`` / ``ViewNotFoundError``, not ``KeyError``)."""
        from fs_platform.store import FsFeatureStore

        try:
            store = FsFeatureStore(config=self.config, repo_path=str(self.repo_path))
            store.registry  # noqa: B018 - connects now, so an unreachable registry fails here, clearly
        except Exception as e:
            raise _registry_error(self.config, e) from e
        return store

    # -- registry ------------------------------------------------------------------------------
    def definitions(self):
        """The repo's parsed Feast objects (``RepoContents``), checked against the metadata policy."""
        contents = repo_mod.parse(self.repo_path)
        if not any(p.name == self.project for p in contents.projects):
            from feast.project import Project

            contents.projects.append(Project(name=self.project, description=""))
        problems = policy.check_repo(contents)
        if problems:
            raise PolicyError(problems)
        return contents

    def plan(self, contents=None) -> PlanResult:
        """What ``apply`` would change in the registry and the stores; changes nothing."""
        return self._plan(contents if contents is not None else self.definitions())

    def _plan(self, contents) -> PlanResult:
        try:
            registry_diff, infra_diff, _ = self.store.plan(contents)
        except (ConfigError, RepoError):
            raise
        except Exception as e:
            raise on_demand_error(contents, self.store, self.project) or RepoError(
                f"plan failed for repo {self.repo_path}: {e}"
            ) from e
        return PlanResult(changes(registry_diff.feast_object_diffs), changes(infra_diff.infra_object_diffs))

    def apply(self, contents=None) -> ApplyResult:
        """Register the repo's definitions and create/remove online tables, under a registry lock.

        ``contents`` (``RepoContents``): register these definitions instead of the repo's, after the same
        checks (``fs promote`` passes another environment's registered definitions)."""
        from feast.repo_operations import extract_objects_for_apply_delete

        if contents is None:
            contents = self.definitions()
        else:
            problems = policy.check_repo(contents)
            if problems:
                raise PolicyError(problems)
        validate_sources(contents, self.config)
        with registry_lock(self.config):
            self.store.refresh_registry()  # another process may have applied while we waited for the lock
            plan = self._plan(contents)  # also runs Feast's inference (entity columns, features)
            check_schemas(contents, self.config)
            to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
                self.project, self.store.registry, contents
            )
            try:
                self.store.apply(to_apply, objects_to_delete=to_delete, partial=False)
            except Exception as e:
                raise RepoError(f"apply failed for repo {self.repo_path}: {e}") from e
        log.info("applied %d registry changes", len(plan.changes))
        return ApplyResult(plan=plan, applied=True)

    # -- training sets (fs_platform.mlops.trainset) ----------------------------------------------
    def training_set(self, feature_service: str, entities, name: str | None = None, path: str | None = None):
        """Point-in-time retrieval of ``feature_service`` for ``entities`` (a pandas frame, a parquet/CSV
        file or a Spark SQL query) saved as a Delta saved dataset with its lineage (an MLflow run when
        MLflow is set up; docs/mlops.md). Returns a ``TrainingSet``."""
        from fs_platform.mlops import trainset

        return trainset.build(self, feature_service, entities, name=name, path=path)

    def reproduce_training_set(self, ref: str):
        """Rebuild training set ``ref`` (its name or MLflow run id) on the Delta versions it read;
        ``Reproduction.identical`` says whether the rows equal the saved ones."""
        from fs_platform.mlops import trainset

        return trainset.reproduce(self, ref)

    # -- materialization ---------------------------------------------------------------------
    def feature_view(self, name: str):
        """The registered feature view ``name`` (``ViewNotFoundError`` naming the known ones)."""
        return feature_view(self.store, name)

    def _view_names(self, views: list[str] | None) -> list[str]:
        if views:
            return [v.name for v in feature_views(self.store, views, online=True)]
        known = [v.name for v in feature_views(self.store, online=True)]
        if not known:
            raise RepoError("no online feature views registered", hint="run `fs apply` first")
        return known

    def materialize(
        self,
        start: str | datetime,
        end: str | datetime,
        views: list[str] | None = None,
        chunk: timedelta = timedelta(days=1),
        progress: Progress | None = None,
        resume: bool = False,
    ) -> MaterializeResult:
        """Load ``[start, end)`` of each view's offline data into the online store, one chunk at a time.

        Chunks are recorded in the backfill ledger under a per-view lease (a concurrent run on the same
        view is refused); online writes are event-time ordered, so fresher stream values survive.
        ``resume`` skips chunks the ledger already records as done. Raises ``BackfillError`` if a
        chunk fails (earlier chunks stay committed and recorded).
        """
        from fs_platform.backfill.runner import Backfiller

        start_dt, end_dt = parse_range(start, end)
        names = self._view_names(views)
        runs = Backfiller(self).materialize(
            names, start_dt, end_dt, chunk=chunk, resume=resume, progress=chunk_progress(progress)
        )
        return materialize_result(start_dt, end_dt, names, runs)

    def materialize_incremental(
        self, end: str | datetime, views: list[str] | None = None, progress: Progress | None = None
    ) -> MaterializeResult:
        """Materialize each view from its watermark up to ``end``, in chunks.

        The watermark is the end of the view's last completed chunk in the ledger (it moves only after a
        chunk succeeded, so a crashed run resumes from there); without one, Feast's last materialization
        end, else ``end - ttl``.
        """
        from fs_platform.backfill.runner import Backfiller

        end_dt = parse_time(end, what="end")
        names = self._view_names(views)
        runs = Backfiller(self).materialize_incremental(names, end_dt, progress=chunk_progress(progress))
        start_dt = min((r.plan.start for r in runs), default=end_dt)
        return materialize_result(start_dt, end_dt, names, runs)

    def teardown(self) -> None:
        """Remove this project's online data and registry entries (offline Delta tables stay).

        The backfill ledger's online entries of the project's views *for this online store* go too
        (first: a failed teardown then only makes the next run redo work): they describe data that no
        longer exists, and would otherwise make the next incremental run start at the old watermark
        (and ``--resume`` skip chunks). Other environments' and tenants' entries stay, so do offline
        entries (the tables are kept). The store's identity goes with its keys, so even entries left
        behind would not count for the emptied store.
        """
        from fs_platform.backfill.model import Target
        from fs_platform.backfill.runner import Backfiller

        views = [v.name for v in self.store.list_feature_views()]
        try:
            Backfiller(self).ledger.forget(views, Target.ONLINE)
        except ConfigError:  # not the fs Redis store: backfills cannot run here, nothing recorded
            pass
        self.store.teardown()


def _open_spark_sessions() -> list:
    """The Spark sessions the Delta store opened in this process (none if it was never imported:
    looking must not start Spark)."""
    engine = sys.modules.get("fs_platform.plugins.delta.engine")
    return engine.open_sessions() if engine is not None else []


def _registry_error(config, err: Exception) -> Exception:
    if isinstance(err, (ConfigError, RepoError)):
        return err
    reg = config.registry
    if reg.registry_type == "sql":
        from sqlalchemy.engine import make_url

        try:
            url = make_url(reg.path)
            where = f"{url.host or 'local socket'}:{url.port or ''}/{url.database or ''}"
        except Exception:
            where = "(unparseable URL)"
        return ConfigError(
            f"cannot reach the SQL registry database at {where}: {type(err).__name__}",
            hint="check FS_REGISTRY_URL and that the database is up",
        )
    return ConfigError(f"cannot open the registry ({reg.registry_type}) for {config.repo_path}: {err}")
