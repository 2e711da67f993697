"""Engine helpers: Spark Connect URLs never leak credentials into errors; embedded Sail settings."""

from __future__ import annotations

import os

import pytest

from fs.errors import OfflineStoreError
from plugins.delta.engine import SAIL_DEFAULTS, _connect, safe_url


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
