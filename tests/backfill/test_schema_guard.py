"""A backfill never writes what its view cannot serve (issue #21.5), and never recreates a deleted view
table unasked (#21.7). Real Delta tables, Sail Spark, the machine's Redis."""

from __future__ import annotations

import shutil

import pytest
import redis
from deltalake import DeltaTable

from fs_platform.backfill.model import Status
from fs_platform.backfill.runner import Backfiller
from fs_platform.cli.main import main
from fs_platform.errors import SchemaMismatchError, SourceNotFoundError
from fs_platform.platform import Platform
from tests.backfill.conftest import REDIS_URL, ROLLING_RETURN, ROLLING_VIEW, apply_views, day_range

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _online_keys(platform) -> int:
    """Keys of online rows (the lease and store markers, ``..._fs:...``, are not rows)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = client.scan_iter(match=f"{platform.config.online_store.key_prefix}:*", count=1000)
        return sum(1 for k in keys if b"_fs:" not in k)
    finally:
        client.close()


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _cli(platform, *args) -> int:
    return main(["--repo", str(platform.repo_path), "backfill", *args])


def test_a_view_declaring_a_feature_its_table_lacks_is_refused_before_anything_runs(make_repo, capsys):
    platform = make_repo(days=2)
    view = "merchant_risk_daily"
    # Registered behind fs apply's back (Feast's own apply; a registry written before #21.4).
    _edit(
        platform.repo_path / "features.py",
        "    ],\n    source=merchant_risk_source,",
        '        _f("refund_rate_1d", Float64, "Refunds / settled transactions over the last day."),\n'
        "    ],\n    source=merchant_risk_source,",
    )
    platform = Platform(platform.repo_path)
    apply_views(platform)
    table = DeltaTable(str(platform.repo_path / "data" / view))
    version, keys = table.version(), _online_keys(platform)
    start, end = day_range(1)
    bf = Backfiller(platform)
    expected = (
        f"feature view {view!r} (source 'merchant_risk_daily_source'): "
        "feature 'refund_rate_1d' has no Delta column 'refund_rate_1d'"
    )
    with pytest.raises(SchemaMismatchError) as api:
        bf.plan(view, start, end, to="both")
    assert api.value.problems == [expected]

    assert _cli(platform, view, "--start", start.isoformat(), "--end", end.isoformat(), "--to", "both") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"error: {expected}" and err[1].startswith("hint: ") and len(err) == 2
    assert DeltaTable(str(platform.repo_path / "data" / view)).version() == version  # no Delta commit
    assert _online_keys(platform) == keys  # no online row
    assert not [e for e in bf.ledger.entries() if e.view == view]  # nothing ran


def test_a_deleted_view_table_is_refused_and_recreated_only_with_create(make_repo, capsys):
    platform = make_repo(days=2)
    location = platform.repo_path / "data" / ROLLING_VIEW
    start, end = day_range(1)
    original = DeltaTable(str(location)).to_pyarrow_table()
    shutil.rmtree(location)
    args = [ROLLING_VIEW, "--start", start.isoformat(), "--end", end.isoformat(), "--to", "both"]

    with pytest.raises(SourceNotFoundError, match="does not exist.*--create"):
        Backfiller(platform).plan(ROLLING_VIEW, start, end, to="both")
    assert _cli(platform, *args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "--create" in err[0], err
    assert not location.exists() and _online_keys(platform) == 0

    assert _cli(platform, *args, "--create") == 0
    captured = capsys.readouterr()
    assert "warning: the Delta table of customer_txn_rolling does not exist: this run creates it" in " ".join(
        captured.out.split()
    )
    recreated = DeltaTable(str(location)).to_pyarrow_table()
    ts = original["event_timestamp"].to_pandas()
    in_range = original.filter(((ts >= start) & (ts < end)).to_numpy())
    order = [("customer_id", "ascending"), ("event_timestamp", "ascending")]
    assert recreated.num_rows == in_range.num_rows > 0
    assert recreated.sort_by(order).equals(in_range.select(recreated.column_names).sort_by(order))
    assert _online_keys(platform) > 0


def test_recomputed_rows_that_do_not_fit_the_view_fail_before_any_commit(make_repo):
    """With the table gone and --create, nothing else compares the rows with the view: the check of the
    recomputed rows must stop the chunk before the table is created or Redis written."""
    platform = make_repo(days=2)
    location = platform.repo_path / "data" / ROLLING_VIEW
    shutil.rmtree(location)
    _edit(
        platform.repo_path / "backfills.py",
        ROLLING_RETURN,
        ROLLING_RETURN + '.drop(columns=["txn_amount_24h"])',
    )
    bf = Backfiller(platform)
    start, end = day_range(1)
    result = bf.run(bf.plan(ROLLING_VIEW, start, end, to="both", create=True))
    assert not result.ok
    failed = [c for c in result.chunks if c.status == Status.FAILED]
    assert failed and "feature 'txn_amount_24h' has no Delta column 'txn_amount_24h'" in failed[0].message
    assert not any(c.status == Status.DONE for c in result.chunks)
    assert not location.exists() and _online_keys(platform) == 0


def test_a_failed_materialize_of_a_view_missing_a_column_gives_a_hint_that_fits(make_repo, capsys):
    """There is no entity_df in a materialize (#21.10): the error names the view and the column, and
    the hint is about the view and its table, also when Spark itself fails on the pull."""
    from datetime import timedelta

    from deltalake import write_deltalake

    from fs_platform.backfill import online
    from fs_platform.backfill.model import Interval
    from fs_platform.errors import OfflineStoreError
    from fs_platform.timeutil import utcnow

    platform = make_repo(days=2)
    view = "merchant_risk_daily"
    location = str(platform.repo_path / "data" / view)
    rows = DeltaTable(location).to_pyarrow_table().drop_columns(["created_at"])
    write_deltalake(location, rows, mode="overwrite", schema_mode="overwrite")

    assert main(["--repo", str(platform.repo_path), "materialize", "-2d", "now", "--views", view]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (
        f"error: feature view {view!r} (source 'merchant_risk_daily_source'): column 'created_at' "
        f"is missing from the Delta table (has {sorted(rows.column_names)})"
    )
    assert "entity_df" not in " ".join(err)

    # The pull itself (what a materialize chunk runs), past the check: Spark fails on the column.
    fv = platform.store.get_feature_view(view)
    with pytest.raises(OfflineStoreError) as pulled:
        online.pull_latest(platform.store, fv, Interval(utcnow() - timedelta(days=2), utcnow()))
    assert "entity_df" not in str(pulled.value) and "Delta table" in pulled.value.hint
