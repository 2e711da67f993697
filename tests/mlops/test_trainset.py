"""Traceable training sets (issue #18.1): built inside an MLflow run (real file store) or with the
lineage beside the saved dataset, and reproduced row for row after new data was appended to a source."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from fs_platform.cli.main import main
from fs_platform.errors import EntityDataFrameError, RepoError
from fs_platform.platform import Platform
from fs_platform.timeutil import microsecond_timestamps
from tests.mlops.conftest import drop_keys, seeded_repo

pytestmark = [pytest.mark.redis]
SERVICE = "fraud_model_v1"


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mlflow_store):
    path, data, prefix = seeded_repo(tmp_path_factory.mktemp("trainset"))
    platform = Platform(path)
    platform.apply()
    entities = data.payments.sample(24, random_state=5)[
        ["customer_id", "merchant_id", "event_timestamp", "amount"]
    ]
    entities = entities.reset_index(drop=True).assign(label=[i % 2 for i in range(24)])
    entity_file = path.parent / "entities.parquet"
    entities.to_parquet(entity_file)
    yield platform, data, entity_file
    platform.close()
    drop_keys(prefix)


def _append_late_payments(platform, data, entities: pd.DataFrame) -> None:
    """A payment one second before every entity row, for its customer: changes the 24h aggregates."""
    late = data.payments.iloc[: len(entities)].assign(
        payment_id=range(10**9, 10**9 + len(entities)),
        customer_id=entities["customer_id"].to_numpy(),
        event_timestamp=(
            pd.to_datetime(entities["event_timestamp"], utc=True) - timedelta(seconds=1)
        ).to_numpy(),
    )
    table = DeltaTable(str(platform.repo_path / "data" / "payments"))
    write_deltalake(table, microsecond_timestamps(pa_table(late, table)), mode="append")


def pa_table(frame: pd.DataFrame, table: DeltaTable):
    import pyarrow as pa

    schema = pa.schema(table.schema().to_arrow())
    return pa.Table.from_pandas(frame[schema.names], preserve_index=False).cast(schema)


def test_built_in_an_mlflow_run_and_reproduced_after_an_append(repo, mlflow_store):
    import mlflow

    platform, data, entity_file = repo
    built = platform.training_set(SERVICE, str(entity_file), name="fraud_v1_run")
    assert built.run_id and built.rows == 24
    saved = built.to_df()
    assert saved["label"].tolist() == [i % 2 for i in range(24)]  # entity columns (labels) kept, in order

    # The run: Feast's tags, per source the Delta table and version, the registry hash, the input.
    run = mlflow.MlflowClient(mlflow_store).get_run(built.run_id)
    tags, params = run.data.tags, run.data.params
    assert tags["feast.feature_service"] == SERVICE and tags["feast.project"] == "payments"
    assert tags["feast.entity_count"] == "24" and tags["fs.registry_hash"].startswith("sha256:")
    payments = str(platform.repo_path / "data" / "payments")
    assert params["source.payments_source.table"] == payments
    assert params["source.payments_source.version"] == "0"
    assert {"source.customer_profile_source.version", "source.merchant_risk_daily_source.version"} <= set(
        params
    )
    (dataset_input,) = run.inputs.dataset_inputs
    source = json.loads(dataset_input.dataset.source)
    # MLflow leaves version 0 out of the source (a falsy check); the run's params carry it too.
    assert source["path"] == built.location and source.get("delta_table_version", 0) == built.version
    assert params["saved_dataset_version"] == str(built.version)
    assert dataset_input.dataset.source_type == "delta_table"
    # The same lineage beside the saved dataset, and as the run's artifact.
    beside = json.loads((platform.repo_path / "data/_fs/trainsets/fraud_v1_run.lineage.json").read_text())
    assert beside == mlflow.artifacts.load_dict(f"runs:/{built.run_id}/fs_lineage.json")
    assert beside["mlflow"] == {"run_id": built.run_id}

    _append_late_payments(platform, data, pd.read_parquet(entity_file))
    again = platform.reproduce_training_set(built.run_id)  # by run id
    assert again.identical and not again.registry_changed
    pd.testing.assert_frame_equal(again.frame, saved, check_dtype=False)

    fresh = platform.training_set(SERVICE, str(entity_file), name="fraud_v1_after_append")
    with pytest.raises(RepoError, match="already exists"):
        platform.training_set(SERVICE, str(entity_file), name="fraud_v1_run")
    assert fresh.lineage["sources"] != built.lineage["sources"]  # payments read at version 1 now
    assert (fresh.to_df()["txn_count_24h"] > saved["txn_count_24h"]).all()  # each row sees its late payment


def test_without_mlflow_the_lineage_beside_reproduces_an_sql_entity_set(repo, monkeypatch):
    platform, data, _ = repo
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    payments = platform.repo_path / "data" / "payments"
    sql = (
        f"SELECT customer_id, merchant_id, event_timestamp, amount FROM delta.`{payments}` "
        "WHERE payment_id < 1000000000 ORDER BY payment_id LIMIT 15"
    )
    built = platform.training_set(SERVICE, sql, name="fraud_v1_sql")
    assert built.run_id is None and built.lineage["mlflow"] is None
    assert built.lineage["entities"] == {
        "kind": "sql",
        "sql": sql,
        "rows": 15,
        "columns": ["customer_id", "merchant_id", "event_timestamp", "amount"],
    }
    before = built.to_df()
    _append_late_payments(platform, data, before)
    again = platform.reproduce_training_set("fraud_v1_sql")  # by name, from the JSON beside it
    assert again.identical
    pd.testing.assert_frame_equal(again.frame, before, check_dtype=False)


def test_cli_build_and_reproduce(repo, capsys, tmp_path):
    platform, _, entity_file = repo
    args = ["--repo", str(platform.repo_path), "--json", "trainset"]
    assert (
        main(
            [
                *args,
                "build",
                "--feature-service",
                SERVICE,
                "--entities",
                str(entity_file),
                "--name",
                "cli_set",
            ]
        )
        == 0
    )
    built = json.loads(capsys.readouterr().out)
    assert built["rows"] == 24 and built["lineage"]["feature_service"] == SERVICE
    out = tmp_path / "rows.parquet"
    assert main([*args, "reproduce", built["run_id"], "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["identical"] is True
    assert len(pd.read_parquet(out)) == 24

    assert main([*args, "build", "--feature-service", "nope", "--entities", str(entity_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no feature service 'nope'" in err[0] and SERVICE in err[0]


def test_bad_inputs_are_one_line_errors(repo):
    platform = repo[0]
    with pytest.raises(EntityDataFrameError, match="neither an existing file nor a SQL query"):
        platform.training_set(SERVICE, "no/such/file.parquet")
    with pytest.raises(RepoError, match="no training set named 'unknown'"):
        platform.reproduce_training_set("unknown")


def test_registry_hash_is_the_same_in_another_process(repo):
    """The hash leaves out what Feast re-creates per process (timestamps, pickled transformations)."""
    import subprocess
    import sys

    from fs_platform.mlops.registry import registered_contents, registry_hash

    platform = repo[0]
    code = (
        "import sys; from fs_platform.platform import Platform; from fs_platform.mlops.registry import "
        "registered_contents, registry_hash; "
        "print(registry_hash(registered_contents(Platform(sys.argv[1]).store)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(platform.repo_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    assert other == registry_hash(registered_contents(platform.store))


def test_tracking_uri_from_the_config_wins_over_the_environment(example_repo, monkeypatch):
    import yaml

    from fs_platform.config import load_config
    from fs_platform.mlops import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert tracking.tracking_uri(load_config(example_repo)) == "http://from-env:5000"
    (example_repo / "envs" / "staging.yaml").write_text(
        yaml.safe_dump({"mlflow": {"tracking_uri": "http://staging:5000"}})
    )
    assert tracking.tracking_uri(load_config(example_repo, "staging")) == "http://staging:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert (
        tracking.tracking_uri(load_config(example_repo)) is None
        and tracking.mlflow_for(load_config(example_repo)) is None
    )


def test_a_file_store_without_its_flag_is_one_line_naming_the_flag(repo, monkeypatch, tmp_path):
    from fs_platform.errors import ConfigError

    platform, _, entity_file = repo
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    with pytest.raises(ConfigError, match="MLflow tracking store file://... failed") as err:
        platform.training_set(SERVICE, str(entity_file), name="no_flag")
    assert "MLFLOW_ALLOW_FILE_STORE=true" in err.value.hint
