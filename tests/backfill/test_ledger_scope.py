"""#14.5: the ledger and leases describe one environment's/tenant's stores. Two environments of one
repo (one ledger table, the same Delta tables, different online stores) never see each other's online
entries; a teardown of one leaves the other's alone. Real Delta tables, Sail Spark and Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import yaml
from typer.testing import CliRunner

from fs_platform.backfill.model import Target
from fs_platform.backfill.runner import Backfiller
from fs_platform.cli.main import app
from fs_platform.platform import Platform
from tests.backfill.conftest import END, REDIS_URL, ROLLING_VIEW, apply_views
from tests.conftest import drop_prefix

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VIEW = ROLLING_VIEW


def staging_of(dev: Platform, prefix: str) -> Platform:
    """``--env staging`` of the same repo: its own Redis tenant prefix and registry, same ledger path."""
    overlay = {
        "registry": {"registry_type": "file", "path": "data/registry_staging.db"},
        "online_store": {"url": REDIS_URL, "key_prefix": prefix},
    }
    (dev.repo_path / "envs" / "staging.yaml").write_text(yaml.safe_dump(overlay))
    staging = Platform(dev.repo_path, env="staging")
    apply_views(staging)
    return staging


def online_count(platform: Platform) -> int:
    rows = [{"customer_id": c} for c in range(1, 151)]
    values = platform.store.get_online_features(features=[f"{VIEW}:txn_amount_24h"], entity_rows=rows)
    return sum(v is not None for v in values.to_dict()["txn_amount_24h"])


def test_environments_have_their_own_ledger_entries_and_leases(make_repo):
    dev = make_repo()
    prefix = f"bftest{uuid.uuid4().hex[:10]}"
    try:
        staging = staging_of(dev, prefix)
        start = END - timedelta(hours=12)
        dev.materialize(start, END, views=[VIEW], chunk=timedelta(hours=6))
        assert Backfiller(dev).ledger.status(VIEW, Target.ONLINE).watermark == END
        assert online_count(dev) > 10 and online_count(staging) == 0

        # staging's online store is empty: its ledger knows nothing, so incremental fills it.
        assert Backfiller(staging).ledger.status(VIEW, Target.ONLINE).watermark is None
        with Backfiller(dev).leases.acquire(VIEW, "a dev run"):  # dev's lease does not block staging
            ran = staging.materialize_incremental(END, views=[VIEW])
        assert ran.chunks_done > 0 and online_count(staging) > 10
        assert Backfiller(staging).ledger.status(VIEW, Target.ONLINE).watermark == END

        # Tearing staging down forgets staging's entries only.
        staging.teardown()
        assert Backfiller(dev).ledger.status(VIEW, Target.ONLINE).watermark == END
        assert dev.materialize_incremental(END, views=[VIEW]).chunks_done == 0
        apply_views(staging)
        assert Backfiller(staging).ledger.entries(VIEW, Target.ONLINE) == []
        runner, repo = CliRunner(), str(dev.repo_path)
        shown = runner.invoke(app, ["--repo", repo, "--env", "staging", "backfill", "status"])
        assert shown.exit_code == 0 and "no entries for this environment" in shown.output, shown.output
        shown = runner.invoke(app, ["--repo", repo, "--json", "backfill", "status", VIEW])
        assert shown.exit_code == 0 and '"target": "online"' in shown.output, shown.output
        assert staging.materialize_incremental(END, views=[VIEW]).chunks_done > 0
    finally:
        drop_prefix(REDIS_URL, prefix)
