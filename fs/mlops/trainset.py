"""Traceable training sets: a feature service's point-in-time retrieval saved as a Delta saved
dataset, with the lineage that reproduces it row for row (docs/mlops.md).

    from fs_platform import Platform
    with Platform("feature_repo") as p:
        ts = p.training_set("fraud_model_v1", "labels.parquet")      # build (an MLflow run if configured)
        again = p.reproduce_training_set(ts.name)                     # or the MLflow run id
        assert again.identical

The lineage (one JSON document) names the feature service and its feature references, the registry
hash (``fs_platform.mlops.registry``), per source the Delta table read and its version, the entity
input, the saved dataset's Delta table and version, and Feast's run tags. It is always written beside
the saved dataset (``<name>.lineage.json``); with MLflow (``fs_platform.mlops.tracking``) the same
document is the run's ``fs_lineage.json`` artifact, its fields are run tags and params, and the saved
dataset is the run's input (a Delta dataset source: path + version); ``fs_platform.mlops.lineage``
writes both.

Reproducing reads the entity rows back from the saved dataset (an entity SQL query may return other
rows today), retrieves the recorded feature references with every source pinned to its recorded
version (``pinned_versions``), and compares the result with the saved rows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from fs_platform.errors import EntityDataFrameError, RepoError
from fs_platform.mlops import tracking
from fs_platform.mlops.lineage import LINEAGE_ARTIFACT, log_to_run, mlflow_run, read_lineage, write_lineage
from fs_platform.mlops.registry import registered_contents, registry_hash
from fs_platform.order import requested_names
from fs_platform.timeutil import utcnow

log = logging.getLogger(__name__)

DEFAULT_DIR = "data/_fs/trainsets"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class TrainingSet:
    """A saved training set: where its rows are (a Delta table at ``version``) and its lineage."""

    name: str
    location: str
    version: int
    rows: int
    lineage: dict[str, Any]
    run_id: str | None = None

    def to_df(self) -> pd.DataFrame:
        """The saved rows (integer/bool columns with nulls as pandas nullable dtypes, like retrieval's)."""
        from fs_platform.plugins.delta.job import to_pandas

        return to_pandas(_read(self.location, self.version))


@dataclass
class Reproduction:
    """A training set rebuilt from its lineage; ``identical``: the same rows as the saved ones."""

    name: str
    run_id: str | None
    rows: int
    identical: bool
    registry_changed: bool
    """The registry's definitions differ from those the set was built with (rows may differ)."""
    frame: pd.DataFrame = field(repr=False)
    lineage: dict[str, Any] = field(repr=False)


# -- build --------------------------------------------------------------------------------------------
def build(
    platform, feature_service: str, entities, *, name: str | None = None, path: str | None = None
) -> TrainingSet:
    """Retrieve ``feature_service`` for ``entities`` (a pandas frame, a parquet/CSV file or a Spark SQL
    query) and save it as the Delta saved dataset ``name``, inside an MLflow run when MLflow is set up."""
    from fs_platform.plugins.delta import SavedDatasetDeltaStorage

    store = platform.store
    service = _feature_service(store, feature_service)
    name = _check_name(name or f"{feature_service}_{utcnow():%Y%m%dT%H%M%S}")
    if _saved_dataset(store, name) is not None:
        raise RepoError(f"a training set named {name!r} already exists", hint="choose another --name")
    entity_df, entity_input = _entities(entities)
    storage = SavedDatasetDeltaStorage(path or f"{DEFAULT_DIR}/{name}")
    location = _location(storage, platform.config)
    mlflow = tracking.mlflow_for(platform.config)
    with mlflow_run(mlflow, platform.config, name) as run_id:
        job = store.get_historical_features(entity_df, features=service)
        refs = list(job.metadata.features)
        store.create_saved_dataset(
            from_=job,
            name=name,
            storage=storage,
            feature_service=service,
            tags={"fs.training_set": "1", **({"mlflow.run_id": run_id} if run_id else {})},
        )
        table = DeltaTable(location)
        version = table.version()
        rows = sum(table.get_add_actions(flatten=True).column("num_records").to_pylist())
        sample = table.to_pyarrow_dataset().head(10_000)  # the schema, and MLflow's profile of the input
        outputs = set(requested_names(refs, job.full_feature_names))
        lineage = {
            "fs_training_set": 1,
            "name": name,
            "created_at": utcnow().isoformat(),
            "project": platform.project,
            "env": platform.env,
            "feature_service": service.name,
            "feature_refs": refs,
            "full_feature_names": job.full_feature_names,
            "registry_hash": registry_hash(registered_contents(store)),
            "sources": _sources(store, refs, job.source_versions, platform.config),
            "entities": {
                **entity_input,
                "rows": rows,
                "columns": [c for c in sample.column_names if c not in outputs],
            },
            "saved_dataset": {"path": storage.path, "location": location, "version": version},
            "feast_tags": _feast_tags(platform.project, service.name, refs, rows),
            "mlflow": {"run_id": run_id} if run_id else None,
        }
        if run_id:
            try:
                log_to_run(mlflow, lineage, sample)
            except Exception as e:
                raise tracking.error(e, platform.config) from None
    write_lineage(location, lineage)
    log.info("training set %s: %d rows, saved dataset version %d", name, rows, version)
    return TrainingSet(name, location, version, rows, lineage, run_id)


def _feature_service(store, name: str):
    try:
        return store.get_feature_service(name)
    except Exception:
        known = sorted(s.name for s in store.list_feature_services())
        raise RepoError(
            f"no feature service {name!r} in project {store.project!r} (known: {', '.join(known) or 'none'})",
            hint="run `fs apply` if it is defined in the repo",
        ) from None


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise RepoError(f"training set name {name!r}: use letters, digits, '_', '.', '-' (at most 128)")
    return name


def _entities(entities) -> tuple[Any, dict[str, Any]]:
    """(what ``get_historical_features`` takes, how the lineage describes it)."""
    if isinstance(entities, pd.DataFrame):
        return entities, {"kind": "dataframe"}
    text = str(entities).strip()
    if Path(text).is_file():
        path = Path(text).resolve()
        reader = pd.read_csv if path.suffix.lower() == ".csv" else pd.read_parquet
        try:
            frame = reader(path)
        except Exception as e:
            raise EntityDataFrameError(
                f"cannot read entity rows from {path}: {type(e).__name__}",
                hint="pass a parquet or CSV file with the join keys and event_timestamp",
            ) from None
        if path.suffix.lower() == ".csv" and "event_timestamp" in frame:
            frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
        return frame, {"kind": "file", "path": str(path)}
    if re.match(r"^(select|with)\b", text, re.IGNORECASE):
        return text, {"kind": "sql", "sql": text}
    raise EntityDataFrameError(
        f"entities {text[:80]!r} is neither an existing file nor a SQL query",
        hint="pass a parquet/CSV file of join keys + event_timestamp, or a Spark SQL SELECT",
    )


def _location(storage, config) -> str:
    from fs_platform.plugins.delta.tables import resolve_location

    return resolve_location(storage.to_data_source(), config)


def _sources(store, refs: list[str], versions: dict[str, int | None], config) -> list[dict[str, Any]]:
    """Per Delta source read: its table (location or catalog name), the version read, its views."""
    from fs_platform.plugins.delta.tables import resolve_location

    views: dict[str, list[str]] = {}
    tables: dict[str, str] = {}
    for view_name in dict.fromkeys(ref.split(":", 1)[0] for ref in refs):
        try:
            source = store.get_feature_view(view_name).batch_source
        except Exception:  # an on-demand view: no source of its own
            continue
        views.setdefault(source.name, []).append(view_name)
        tables[source.name] = (
            resolve_location(source, config) if getattr(source, "path", None) else source.table
        )
    return [
        {"source": s, "table": tables.get(s), "version": v, "views": views.get(s, [])}
        for s, v in sorted(versions.items())
    ]


def _feast_tags(project: str, service: str, refs: list[str], rows: int) -> dict[str, str]:
    """The run tags Feast's MLflow integration sets on a historical retrieval (same names)."""
    return {
        "feast.project": project,
        "feast.retrieval_type": "historical",
        "feast.feature_service": service,
        "feast.feature_views": ",".join(sorted({r.split(":", 1)[0] for r in refs})),
        "feast.feature_refs": ",".join(refs)[:4990],
        "feast.entity_count": str(rows),
        "feast.feature_count": str(len(refs)),
    }


def _read(location: str, version: int) -> pa.Table:
    return DeltaTable(location, version=version).to_pyarrow_table()


def _saved_dataset(store, name: str):
    from feast.errors import SavedDatasetNotFound

    try:
        return store.registry.get_saved_dataset(name, store.project)
    except SavedDatasetNotFound:
        return None


# -- reproduce ----------------------------------------------------------------------------------------
def lineage_of(platform, ref: str) -> dict[str, Any]:
    """The lineage of training set ``ref``: a saved dataset name, else an MLflow run id."""
    dataset = _saved_dataset(platform.store, ref)
    if dataset is not None:
        lineage = read_lineage(_location(dataset.storage, platform.config))
        if lineage is None:
            raise RepoError(
                f"saved dataset {ref!r} has no lineage file beside it: "
                "it was not built by `fs trainset build`"
            )
        return lineage
    mlflow = tracking.mlflow_for(platform.config)
    if mlflow is None:
        raise RepoError(
            f"no training set named {ref!r} in env {platform.env!r}",
            hint="`fs trainset build` names it; a run id needs MLflow (pip install 'fs-platform[mlflow]', "
            "MLFLOW_TRACKING_URI)",
        )
    try:
        return mlflow.artifacts.load_dict(f"runs:/{ref}/{LINEAGE_ARTIFACT}")
    except Exception as e:
        raise RepoError(
            f"no training set named {ref!r}, nor an MLflow run {ref!r} with {LINEAGE_ARTIFACT}: "
            f"{type(e).__name__}",
            hint="check the name or run id",
        ) from None


def reproduce(platform, ref: str) -> Reproduction:
    """Rebuild training set ``ref`` (name or MLflow run id) on the Delta versions it read."""
    from fs_platform.plugins.delta.job import to_pandas
    from fs_platform.plugins.delta.version_pins import pinned_versions

    lineage = lineage_of(platform, ref)
    ds = lineage["saved_dataset"]
    saved = _read(ds["location"], ds["version"])
    entity_df = to_pandas(saved.select(lineage["entities"]["columns"]))
    versions = {s["source"]: s["version"] for s in lineage["sources"]}
    with pinned_versions(versions):
        job = platform.store.get_historical_features(
            entity_df, features=lineage["feature_refs"], full_feature_names=lineage["full_feature_names"]
        )
        again = job.to_arrow()
    frame = to_pandas(again)
    identical = _same_rows(frame, to_pandas(saved))
    changed = registry_hash(registered_contents(platform.store)) != lineage["registry_hash"]
    if not identical:
        log.warning("training set %s: the reproduced rows differ from the saved ones", lineage["name"])
    run_id = (lineage.get("mlflow") or {}).get("run_id")
    return Reproduction(lineage["name"], run_id, len(frame), identical, changed, frame, lineage)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same columns, rows and values (dtypes aligned: Delta may read a column back wider or nullable)."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    try:
        return a.equals(b.astype(a.dtypes.to_dict()))
    except (TypeError, ValueError):
        return False
