"""The Flink engine without a JVM: the install message when the engine is missing, the connector
check, and the restore rules (a changed spec refuses with the way out)."""

from __future__ import annotations

import os
import shutil
import zipfile

import pytest

from fs_platform.cli.main import main
from fs_platform.plugins.flink.env import CONNECTOR_DIR, FlinkNotInstalled, connector_jars, flink_python
from fs_platform.plugins.flink.plan import JobPlan, RestoreRefused, check_restore, latest_restore_point
from tests.plugins.flink.conftest import needs_flink

SAVED = JobPlan({"customer_txn_aggregates": 11, "merchant_txn_aggregates": 22}, ("payments",))


def test_without_the_engine_the_cli_says_how_to_install_it(example_repo, monkeypatch, capsys):
    monkeypatch.setenv("FS_FLINK_PYTHON", str(example_repo / "no-such-env" / "bin" / "python"))
    code = main(["--repo", str(example_repo), "stream", "run", "--engine", "flink"])
    err = capsys.readouterr().err
    assert code == 1
    assert "the Flink engine is not installed" in err
    assert "run `fs stream install-flink`" in err and "FS_FLINK_PYTHON" in err


def test_restore_is_refused_when_a_spec_changed_or_a_view_is_new():
    check_restore(SAVED, SAVED, "chk-3")  # same specs, same topics
    check_restore(SAVED, JobPlan({"customer_txn_aggregates": 11}, ("payments",)), "chk-3")  # a view dropped
    with pytest.raises(
        RestoreRefused, match=r"tile layout of customer_txn_aggregates changed.*fs materialize"
    ):
        check_restore(SAVED, JobPlan({**SAVED.views, "customer_txn_aggregates": 12}, ("payments",)), "chk-3")
    with pytest.raises(RestoreRefused, match=r"customer_amount_stats is new since it was taken.*--fresh"):
        check_restore(SAVED, JobPlan({**SAVED.views, "customer_amount_stats": 33}, ("payments",)), "chk-3")
    with pytest.raises(
        RestoreRefused, match=r"taken reading topics payments, this job reads payments, refunds"
    ):
        check_restore(SAVED, JobPlan(SAVED.views, ("payments", "refunds")), "chk-3")


def test_latest_restore_point_is_the_newest_checkpoint_or_savepoint(tmp_path):
    assert latest_restore_point(tmp_path) is None
    for i, point in enumerate(["job1/chk-4", "job2/chk-9", "savepoints/savepoint-ab-1", "job2/chk-10"]):
        (tmp_path / point).mkdir(parents=True)
        meta = tmp_path / point / "_metadata"
        meta.write_bytes(b"x")
        os.utime(meta, (1000 + i, 1000 + i))
    (tmp_path / "job2" / "chk-11").mkdir()  # in progress: no _metadata yet
    assert latest_restore_point(tmp_path) == tmp_path / "job2" / "chk-10"


@needs_flink
def test_the_connector_jar_manifest_is_checked(tmp_path):
    prefix = flink_python().parent.parent
    assert connector_jars(prefix)[0].name == "flink-connector-kafka.jar"
    fake = tmp_path / CONNECTOR_DIR / "pyflink" / "lib"
    shutil.copytree(prefix / CONNECTOR_DIR / "pyflink" / "lib", fake)
    with zipfile.ZipFile(fake / "flink-connector-kafka.jar", "w") as z:  # same name, another build
        z.writestr(
            "META-INF/MANIFEST.MF",
            "Manifest-Version: 1.0\nImplementation-Title: Flink : Connectors : Kafka\n"
            "Implementation-Version: 3.3.0-1.20\nImplementation-Vendor-Id: org.apache.flink\n",
        )
    with pytest.raises(FlinkNotInstalled, match="not the expected Apache flink-connector-kafka 4.0.1-2.0"):
        connector_jars(tmp_path)
