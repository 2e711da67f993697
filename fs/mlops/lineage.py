"""Where a training set's lineage is kept: a JSON file beside the saved dataset (always) and, when
MLflow is set up, the build's run (tags, params, the saved dataset as a Delta input, the
``fs_lineage.json`` artifact)."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import pyarrow as pa
from pyarrow import fs as pafs

from fs_platform.mlops import tracking

LINEAGE_ARTIFACT = "fs_lineage.json"


class mlflow_run:
    """An MLflow run around the build (or the caller's active run); yields its id, or None without MLflow."""

    def __init__(self, mlflow, config, name: str):
        self.mlflow, self.config, self.name, self.started = mlflow, config, name, False

    def __enter__(self) -> str | None:
        if self.mlflow is None:
            return None
        try:
            active = self.mlflow.active_run()
            if active is not None:
                return active.info.run_id
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or self.config.project
            client = self.mlflow.MlflowClient()
            found = client.get_experiment_by_name(name)
            self.mlflow.set_experiment(
                experiment_id=found.experiment_id if found else client.create_experiment(name)
            )
            run = self.mlflow.start_run(run_name=self.name)
        except Exception as e:
            raise tracking.error(e, self.config) from None
        self.started = True
        return run.info.run_id

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.started:
            self.mlflow.end_run("FAILED" if exc_type else "FINISHED")


def log_to_run(mlflow, lineage: dict[str, Any], sample: pa.Table) -> None:
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    ds = lineage["saved_dataset"]
    tags = {
        **lineage["feast_tags"],
        "fs.training_set": lineage["name"],
        "fs.registry_hash": lineage["registry_hash"],
        "fs.env": lineage["env"],
    }
    params = {
        "feature_service": lineage["feature_service"],
        "registry_hash": lineage["registry_hash"],
        "saved_dataset": ds["location"],
        "saved_dataset_version": ds["version"],
    }
    for s in lineage["sources"]:
        params[f"source.{s['source']}.table"] = s["table"]
        params[f"source.{s['source']}.version"] = s["version"]
    mlflow.set_tags(tags)
    mlflow.log_params(params)
    source = DeltaDatasetSource(path=ds["location"], delta_table_version=ds["version"])
    # MLflow's advice on integer columns in model signatures: not a model here
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
        )
        dataset = mlflow.data.from_pandas(sample.to_pandas(), source=source, name=lineage["name"])
    mlflow.log_input(dataset, context="training")
    mlflow.log_dict(lineage, LINEAGE_ARTIFACT)


def _lineage_path(location: str) -> tuple[pafs.FileSystem, str]:
    filesystem, path = (
        pafs.FileSystem.from_uri(location) if "://" in location else (pafs.LocalFileSystem(), location)
    )
    return filesystem, path.rstrip("/") + ".lineage.json"


def write_lineage(location: str, lineage: dict[str, Any]) -> None:
    filesystem, path = _lineage_path(location)
    with filesystem.open_output_stream(path) as out:
        out.write((json.dumps(lineage, indent=2, default=str) + "\n").encode())


def read_lineage(location: str) -> dict[str, Any] | None:
    filesystem, path = _lineage_path(location)
    try:
        with filesystem.open_input_stream(path) as src:
            return json.loads(src.read())
    except FileNotFoundError:
        return None
