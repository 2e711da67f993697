"""Engine helpers: Spark Connect URLs never leak credentials into errors; embedded Sail settings."""

from __future__ import annotations

import os

import pytest

from fs_platform.errors import OfflineStoreError
from fs_platform.plugins.delta.engine import SAIL_DEFAULTS, _connect, safe_url


def test_safe_url_keeps_only_scheme_host_port():
    assert safe_url("sc://spark.example:15002/;token=s3cret;user_id=me") == "sc://spark.example:15002"
    assert safe_url("sc://user:pw@spark.example:15002;token=s3cret") == "sc://spark.example:15002"


def test_connect_error_does_not_show_the_token():
    with pytest.raises(OfflineStoreError) as err:
        _connect("sc://127.0.0.1:notaport/;token=s3cret", {})
    assert "s3cret" not in str(err.value) and "token" not in str(err.value)
    assert "sc://127.0.0.1:notaport" in str(err.value)


def test_embedded_sail_starts_with_the_store_defaults_unless_the_environment_overrides(engine):
    """Sail reads its settings from the environment when it starts (the ``engine`` fixture started it)."""
    for name in SAIL_DEFAULTS:
        assert os.environ.get(name)  # ours, or a value the environment set before start
    assert engine.spark.range(3).count() == 3


def test_a_handed_in_session_reads_naive_timestamps_as_utc(engine):
    """A user's session in another time zone is switched to UTC: a naive 12:00 is 12:00 UTC."""
    from pyspark.sql import SparkSession

    from fs_platform.plugins.delta.engine import _embedded_url, get_engine, use_spark_session

    session = SparkSession.builder.remote(_embedded_url()).create()
    session.conf.set("spark.sql.session.timeZone", "America/Sao_Paulo")
    use_spark_session(session)
    try:
        assert get_engine(None).spark is session
        micros = session.sql(
            "SELECT unix_micros(CAST(TIMESTAMP_NTZ '2026-01-01 12:00:00' AS TIMESTAMP)) AS us"
        )
        assert micros.collect()[0]["us"] == 1767268800 * 1_000_000  # 2026-01-01T12:00:00Z
    finally:
        use_spark_session(None)


def test_a_catalog_tables_naive_timestamps_pass_the_schema_check(engine, tmp_path):
    """Spark names a naive column timestamp_ntz; the store reads it as a UTC timestamp, as delta-rs's."""
    from fs_platform.plugins.delta import DeltaSource
    from fs_platform.plugins.delta.tables import delta_schema

    name = f"ntz_{tmp_path.name.replace('-', '_')}"
    engine.spark.sql(
        f"CREATE TABLE {name} USING delta LOCATION '{tmp_path / 't'}' AS "
        "SELECT CAST(1 AS BIGINT) AS customer_id, TIMESTAMP_NTZ '2026-01-01 00:00:00' AS ts"
    )
    source = DeltaSource(name="ntz", table=name, timestamp_field="ts")
    assert dict(delta_schema(source)) == {"customer_id": "bigint", "ts": "timestamp"}
