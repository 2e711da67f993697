"""Corrective backfills reach the online store; teardown resets the online ledger; failures leak
no feature values; runs emit the job metrics. Real Delta tables, Sail Spark and Redis."""

from __future__ import annotations

import copy
import logging
from datetime import timedelta

import pyarrow as pa
import pytest

from fs_platform.backfill import online
from fs_platform.backfill.model import Interval, Status, Target
from fs_platform.backfill.runner import Backfiller
from fs_platform.backfill.validation import ChunkCheck
from fs_platform.errors import BackfillError
from fs_platform.observability import REGISTRY
from tests.backfill.conftest import END, ROLLING_RETURN, ROLLING_VIEW, apply_views

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VIEW = ROLLING_VIEW  # a plain view recomputed by a Python definition (tests/backfill/conftest.py)
FEATURE = f"{VIEW}:txn_amount_24h"
CUSTOMERS = range(1, 151)
PII = ("jane.doe@example.com", "4111-1111-1111-1111")


def amounts(platform) -> list:
    rows = [{"customer_id": c} for c in CUSTOMERS]
    return platform.store.get_online_features(features=[FEATURE], entity_rows=rows).to_dict()[
        "txn_amount_24h"
    ]


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def double_the_amounts(platform) -> None:
    """Fix the definition's logic: amounts doubled, event and created times unchanged (as in real defs)."""
    defs = platform.repo_path / "backfills.py"
    defs.write_text(
        defs.read_text().replace(
            ROLLING_RETURN,
            '    out = customer_rolling(ctx.frames["payments"])\n'
            '    out["txn_amount_24h"] = out["txn_amount_24h"] * 2\n'
            "    return out",
        )
    )


def test_backfill_with_a_changed_definition_changes_online_values_and_emits_metrics(make_repo):
    platform = make_repo()
    start = END - timedelta(hours=12)
    Backfiller(platform).materialize([VIEW], start, END, chunk=timedelta(hours=12))
    before = amounts(platform)
    assert sum(v is not None for v in before) > 10
    double_the_amounts(platform)
    written = sample("fs_job_rows_total", kind="backfill", view=VIEW, outcome="written")
    chunks = sample("fs_job_duration_seconds_count", kind="backfill", view=VIEW)
    bf = Backfiller(platform)
    result = bf.run(bf.plan(VIEW, start, END, to="both", chunk=timedelta(hours=12)))
    assert result.ok, [c.message for c in result.chunks]
    online_chunk = next(c for c in result.chunks if c.target == Target.ONLINE)
    assert online_chunk.rows_written > 0  # (skipped: rows already past the ttl, as in the materialization)
    after = amounts(platform)
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b is not None]
    assert all(a == pytest.approx(2 * b) for b, a in changed)
    # One observation per finished chunk (offline and online), rows counted.
    assert sample("fs_job_duration_seconds_count", kind="backfill", view=VIEW) == chunks + len(result.chunks)
    assert sample("fs_job_rows_total", kind="backfill", view=VIEW, outcome="written") == (
        written + sum(c.rows_written for c in result.chunks)
    )
    # A plain materialization of the same (old-created) rows does not undo the correction.
    Backfiller(platform).materialize([VIEW], start, END, chunk=timedelta(hours=12))
    assert amounts(platform) == after


def test_teardown_drops_the_online_ledger_so_incremental_refills(make_repo):
    platform = make_repo()
    Backfiller(platform).materialize([VIEW], END - timedelta(hours=6), END, chunk=timedelta(hours=6))
    assert Backfiller(platform).ledger.status(VIEW, Target.ONLINE).watermark == END
    platform.teardown()
    apply_views(platform)
    bf = Backfiller(platform)
    assert bf.ledger.entries(VIEW, Target.ONLINE) == []
    assert bf.ledger.status(VIEW, Target.ONLINE).watermark is None
    assert all(v is None for v in amounts(platform))
    platform.materialize_incremental(END, views=[VIEW])
    assert sum(v is not None for v in amounts(platform)) > 10


def test_failures_never_put_feature_values_in_ledger_errors_or_logs(make_repo, caplog):
    platform = make_repo()

    def explode(view, interval, data):
        raise ValueError(f"bad row {{'email': '{PII[0]}', 'card': {PII[1]}}} at 12.5")

    caplog.set_level(logging.INFO)
    bf = Backfiller(platform, checks=[ChunkCheck(explode, views=(VIEW,))])
    with pytest.raises(BackfillError) as err:
        bf.materialize([VIEW], END - timedelta(hours=6), END, chunk=timedelta(hours=6))
    [entry] = [e for e in bf.ledger.entries(VIEW, Target.ONLINE) if e.status == Status.FAILED]
    assert entry.message.startswith("ValueError")
    for text in (entry.message, str(err.value), caplog.text):
        assert not any(p in text for p in PII), text
    assert "Traceback" not in caplog.text  # an expected failure logs one line, no traceback


def test_online_write_handles_mapped_timestamp_columns(make_repo):
    platform = make_repo()
    view = copy.deepcopy(platform.store.get_feature_view(VIEW))
    view.batch_source.field_mapping = {"event_timestamp": "event_ts", "created_at": "created_ts"}
    ts = END - timedelta(minutes=1)
    rows = pa.table(
        {
            "customer_id": pa.array([1, 2], pa.int64()),
            **{f: pa.array([7, 7], pa.int64()) for f in ("txn_count_1h", "txn_count_24h")},
            **{f: pa.array([77.0, 77.0]) for f in ("txn_amount_1h", "txn_amount_24h")},
            "event_timestamp": pa.array([ts, ts], pa.timestamp("us", "UTC")),
            "created_at": pa.array([ts, ts], pa.timestamp("us", "UTC")),
        }
    )
    assert online.write(platform.store, view, rows) == online.Written(2, 0)
    assert amounts(platform)[:2] == [77.0, 77.0]


def test_an_offline_only_correction_reaches_online_through_the_next_materialization(make_repo):
    """A definition fixed at unchanged event and created times, backfilled offline only, reaches the
    online store through the next materialization (equal times, other values: the write wins)."""
    platform = make_repo()
    start = END - timedelta(hours=12)
    Backfiller(platform).materialize([VIEW], start, END, chunk=timedelta(hours=12))
    before = amounts(platform)
    double_the_amounts(platform)
    bf = Backfiller(platform)
    assert bf.run(bf.plan(VIEW, start, END, to="offline", chunk=timedelta(hours=12))).ok
    assert amounts(platform) == before  # offline only: online untouched so far
    Backfiller(platform).materialize([VIEW], start, END, chunk=timedelta(hours=12))
    changed = [(b, a) for b, a in zip(before, amounts(platform), strict=True) if b is not None]
    assert len(changed) > 10 and all(a == pytest.approx(2 * b) for b, a in changed)


def test_a_recompute_with_fewer_rows_than_the_range_holds_is_rejected_unless_allowed(make_repo):
    """Raw inputs behind what the stream wrote (here: the last 6 hours of payments missing) must not
    silently delete the view's rows: the chunk is rejected, the table unchanged."""
    from deltalake import DeltaTable

    from fs_platform.backfill.offline import ts_literal

    platform = make_repo()
    start, end = END - timedelta(hours=12), END
    table = str(platform.repo_path / "data" / VIEW)
    held = DeltaTable(table).to_pyarrow_table().num_rows
    payments = DeltaTable(str(platform.repo_path / "data" / "payments"))
    payments.delete(f"event_timestamp >= '{ts_literal(END - timedelta(hours=6))}'")

    bf = Backfiller(platform)
    result = bf.run(bf.plan(VIEW, start, end, to="offline", chunk=timedelta(hours=12)))
    rejected = [c for c in result.chunks if c.status == Status.REJECTED]
    assert rejected and all("--allow-shrink" in c.message for c in rejected) and not result.ok
    assert rejected[-1].interval.end == end  # the chunk that lost its last 6 hours of input
    assert DeltaTable(table).to_pyarrow_table().num_rows == held

    allowed = bf.run(bf.plan(VIEW, start, end, to="offline", chunk=timedelta(hours=12)), allow_shrink=True)
    assert allowed.ok and 0 < DeltaTable(table).to_pyarrow_table().num_rows < held


def test_both_targets_pick_the_same_row_of_an_exact_tie(make_repo):
    """A definition emitting two rows per entity equal in event and created time but not in value:
    ``--to both`` puts online the row the offline store's point-in-time join and materialization
    pick (Spark's tie hash), not whichever came last in the recomputed frame."""
    platform = make_repo()
    start = END - timedelta(hours=12)
    defs = platform.repo_path / "backfills.py"
    defs.write_text(
        defs.read_text().replace(
            ROLLING_RETURN,
            '    out = customer_rolling(ctx.frames["payments"])\n'
            "    twin = out.copy()\n"
            '    twin["txn_amount_24h"] = twin["txn_amount_24h"] + 1000.0\n'
            "    import pandas as _pd\n"
            "    return _pd.concat([out, twin], ignore_index=True)",
        )
    )
    bf = Backfiller(platform)
    result = bf.run(bf.plan(VIEW, start, END, to="both", chunk=timedelta(hours=12)))
    assert result.ok, [c.message for c in result.chunks]
    pulled = online.pull_latest(
        platform.store, platform.store.get_feature_view(VIEW), Interval(start, END)
    ).data
    expected = dict(zip(pulled["customer_id"].to_pylist(), pulled["txn_amount_24h"].to_pylist(), strict=True))
    served = {c: v for c, v in zip(CUSTOMERS, amounts(platform), strict=True) if v is not None}
    assert len(served) > 10
    assert served == {c: expected[c] for c in served}


def test_a_join_key_renamed_by_field_mapping_backfills_both_targets(make_repo):
    """The Delta table names the key ``cust_id``; the view maps it to ``customer_id``. The
    recomputed rows carry source names: the offline commit keeps them, the quality gate judges
    them under the feature names, and the online phase finds each entity's latest row."""
    from deltalake import DeltaTable, write_deltalake

    from fs_platform.platform import Platform

    platform = make_repo()
    table_path = str(platform.repo_path / "data" / VIEW)
    data = DeltaTable(table_path).to_pyarrow_table()
    renamed = data.rename_columns(["cust_id" if c == "customer_id" else c for c in data.column_names])
    write_deltalake(table_path, renamed, mode="overwrite", schema_mode="overwrite")
    features = platform.repo_path / "features.py"
    features.write_text(
        features.read_text().replace(
            '    path="data/customer_txn_rolling",\n',
            '    path="data/customer_txn_rolling",\n    field_mapping={"cust_id": "customer_id"},\n',
        )
    )
    defs = platform.repo_path / "backfills.py"
    defs.write_text(
        defs.read_text().replace(
            ROLLING_RETURN,
            '    return customer_rolling(ctx.frames["payments"]).rename(columns={"customer_id": "cust_id"})',
        )
    )
    platform = Platform(platform.repo_path)
    apply_views(platform)
    assert platform.store.get_feature_view(VIEW).batch_source.field_mapping == {"cust_id": "customer_id"}

    start = END - timedelta(hours=12)
    bf = Backfiller(platform)
    result = bf.run(bf.plan(VIEW, start, END, to="both", chunk=timedelta(hours=12)))
    assert result.ok, [c.message for c in result.chunks]
    assert {c.validation for c in result.chunks} == {"pass"}, [c.message for c in result.chunks]
    assert "cust_id" in [f.name for f in DeltaTable(table_path).schema().fields]
    assert sum(v is not None for v in amounts(platform)) > 10
