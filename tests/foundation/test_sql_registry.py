"""Shared environments: Feast's SQL registry on the machine's Postgres."""

import os
import subprocess
import sys
import uuid

import pytest

from fs_platform import datagen

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def registry_url():
    import psycopg

    name = f"fs_reg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_concurrent_applies_leave_a_consistent_registry(example_repo, registry_url):
    datagen.write_tables(datagen.generate(seed=1, customers=30, merchants=5, days=2), example_repo / "data")
    tenant = f"t{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "FS_REGISTRY_URL": registry_url,
        "FS_REDIS_URL": "redis://127.0.0.1:6379/0",
        "FS_TENANT": tenant,
    }
    cmd = [
        sys.executable,
        "-m",
        "fs_platform.cli.main",
        "--repo",
        str(example_repo),
        "--env",
        "staging",
        "--json",
        "apply",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for _out, err, code in results:
        assert code == 0, err

    from fs_platform.platform import Platform

    os.environ.update({k: env[k] for k in ("FS_REGISTRY_URL", "FS_REDIS_URL", "FS_TENANT")})
    try:
        store = Platform(example_repo, env="staging").store
        views = sorted(v.name for v in store.list_feature_views())
        assert views == [
            "customer_amount_stats",
            "customer_merchant_spread",
            "customer_profile",
            "customer_txn_aggregates",
            "merchant_risk_daily",
            "merchant_txn_aggregates",
        ]
        assert sorted(e.name for e in store.list_entities()) == ["customer", "merchant"]
        assert sorted(s.name for s in store.list_feature_services()) == ["fraud_model_v1", "fraud_model_v2"]
        # The aggregation spec travels in the view's tags through the SQL registry unchanged.
        from fs_platform.aggregation.spec import spec_of

        local = {v.name: v for v in Platform(example_repo, env="staging").definitions().feature_views}
        for name in (
            "customer_txn_aggregates",
            "merchant_txn_aggregates",
            "customer_amount_stats",
            "customer_merchant_spread",
        ):
            assert spec_of(store.get_feature_view(name)) == spec_of(local[name])
        assert [v.name for v in store.list_on_demand_feature_views()] == ["txn_amount_vs_history"]
        # a third apply sees nothing left to change
        proc = subprocess.run(cmd[:-1] + ["plan"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        import json

        assert json.loads(proc.stdout)["changes"] == []
    finally:
        for k in ("FS_REGISTRY_URL", "FS_REDIS_URL", "FS_TENANT"):
            os.environ.pop(k, None)
        subprocess.run(cmd[:-2] + ["teardown", "--yes"], env=env, capture_output=True, timeout=300)
