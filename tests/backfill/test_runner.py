"""Backfills and ledger-tracked materialization on real Delta tables, Sail Spark and Redis."""

from __future__ import annotations

import threading
from datetime import timedelta

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from fs_platform.backfill import online
from fs_platform.backfill.lease import describe_self
from fs_platform.backfill.model import Kind, Status, Target
from fs_platform.backfill.plan import grid_chunks
from fs_platform.backfill.runner import Backfiller
from fs_platform.backfill.validation import ChunkCheck, ValidationOutcome
from fs_platform.errors import BackfillError, LeaseHeldError
from fs_platform.timeutil import parse_time
from tests.backfill.conftest import END, ROLLING_VIEW, day_range

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VIEW = ROLLING_VIEW  # a plain view recomputed by a Python definition (tests/backfill/conftest.py)
FEATURES = [f"{VIEW}:txn_count_24h", f"{VIEW}:txn_amount_24h"]


def offline_rows(platform, view: str = VIEW) -> pa.Table:
    table = DeltaTable(str(platform.repo_path / "data" / view)).to_pyarrow_table()
    keys = "merchant_id" if view == "merchant_risk_daily" else "customer_id"
    return table.sort_by([(keys, "ascending"), ("event_timestamp", "ascending")])


def online_values(platform, customers) -> dict:
    rows = [{"customer_id": c} for c in customers]
    return platform.store.get_online_features(features=FEATURES, entity_rows=rows).to_dict()


def test_rerun_replaces_the_range_without_duplicates_and_parallel_matches(make_repo):
    platform = make_repo()
    bf = Backfiller(platform)
    before = offline_rows(platform)
    start, end = day_range(2)
    first = bf.run(bf.plan(VIEW, start, end, to="offline"))
    assert first.ok and first.count(Status.DONE) == 3
    after_first = offline_rows(platform)
    # Recomputing from raw payments reproduces the stored rows exactly: no change, no duplicates.
    assert after_first.num_rows == before.num_rows
    assert after_first.equals(before)
    version = DeltaTable(str(platform.repo_path / "data" / VIEW)).version()
    second = bf.run(bf.plan(VIEW, start, end, to="offline"), parallel=3)
    assert second.ok and offline_rows(platform).equals(after_first)
    assert (
        DeltaTable(str(platform.repo_path / "data" / VIEW)).version() == version + 3
    )  # one commit per chunk
    resumed = bf.run(bf.plan(VIEW, start, end, to="offline", resume=True))
    assert (
        resumed.chunks == [] and DeltaTable(str(platform.repo_path / "data" / VIEW)).version() == version + 3
    )


def test_sql_definition_recomputes_merchant_risk_and_dry_run_writes_nothing(make_repo):
    platform = make_repo()
    bf = Backfiller(platform)
    start, end = day_range(2)
    entries_before = len(bf.ledger.entries())
    plan = bf.plan("merchant_risk_daily", start, end, to="both")
    assert plan.definition == "sql" and len(plan.chunks) == 6 and not any(c.done for c in plan.chunks)
    assert all(c.estimated_rows and c.estimated_rows > 0 for c in plan.chunks if c.target == Target.OFFLINE)
    assert len(bf.ledger.entries()) == entries_before  # planning records nothing
    before = offline_rows(platform, "merchant_risk_daily").to_pandas()
    result = bf.run(plan)
    assert result.ok, [c.message for c in result.chunks]
    after = offline_rows(platform, "merchant_risk_daily").to_pandas()
    assert len(after) == len(before)
    # Spark's round() is half-up, numpy's (the original table) half-to-even: a rounded column may
    # differ by one unit in its last place; unrounded ratios must agree to float precision.
    tolerance = {
        "chargeback_rate_30d": 1e-9,
        "approval_rate_1d": 1e-9,
        "txn_amount_1d": 0.01 + 1e-9,
        "avg_ticket_1d": 1e-4 + 1e-9,
    }
    for column, tol in tolerance.items():
        assert (after[column] - before[column]).abs().max() <= tol, column
    assert (after["txn_volume_1d"] == before["txn_volume_1d"]).all()
    replan = bf.plan("merchant_risk_daily", start, end, to="both")
    assert all(c.done for c in replan.chunks)


def test_backfill_never_overwrites_fresher_stream_values(make_repo):
    platform = make_repo()
    bf = Backfiller(platform)
    view = platform.store.get_feature_view(VIEW)
    customers = list(range(1, 41))
    stream_ts = END + timedelta(minutes=5)
    stop = threading.Event()

    def stream() -> None:  # the ingestor's write path: newer events, written throughout the backfill
        n = 0
        while not stop.is_set():
            n += 1
            rows = pa.table(
                {
                    "customer_id": pa.array(customers, pa.int64()),
                    **{
                        f: pa.array([n] * len(customers), pa.int64())
                        for f in ("txn_count_1h", "txn_count_24h")
                    },
                    **{
                        f: pa.array([1000.0 + n] * len(customers))
                        for f in ("txn_amount_1h", "txn_amount_24h")
                    },
                    "event_timestamp": pa.array(
                        [stream_ts + timedelta(microseconds=n)] * len(customers), pa.timestamp("us", "UTC")
                    ),
                    "created_at": pa.array([stream_ts] * len(customers), pa.timestamp("us", "UTC")),
                }
            )
            online.write(platform.store, view, rows)

    writer = threading.Thread(target=stream)
    writer.start()
    try:
        start, end = day_range(1)
        result = bf.run(bf.plan(VIEW, start, end, to="both"))
    finally:
        stop.set()
        writer.join()
    assert result.ok
    assert sum(c.rows_skipped for c in result.chunks if c.target == Target.ONLINE) > 0
    values = online_values(platform, customers)
    assert all(v > 1000.0 for v in values["txn_amount_24h"])  # every streamed customer kept its newer value
    others = online_values(platform, range(41, 151))
    assert any(
        v is not None and v < 1000.0 for v in others["txn_amount_24h"]
    )  # the backfill did write the rest


def test_second_run_is_refused_while_the_view_is_leased(make_repo):
    platform = make_repo()
    bf = Backfiller(platform)
    start, end = day_range(1)
    plan = bf.plan(VIEW, start, end, to="offline")
    with bf.leases.acquire(VIEW, describe_self("other")):
        assert bf.plan(VIEW, start, end, to="offline").lease_holder.endswith("run other")
        with pytest.raises(LeaseHeldError, match="run other"):
            bf.run(plan)
        with pytest.raises(LeaseHeldError):
            platform.materialize(start, end, views=[VIEW])
    assert bf.run(plan).ok


def test_materialize_watermark_moves_only_after_success_and_resumes(make_repo):
    platform = make_repo()
    start = END - timedelta(hours=12)
    bad = grid_chunks(start, END, timedelta(hours=3))[2].start

    def reject_bad_chunk(view, interval, data):
        return ValidationOutcome(interval.start != bad, "synthetic rejection")

    strict = Backfiller(platform, checks=[ChunkCheck(reject_bad_chunk, mode="strict", views=(VIEW,))])
    with pytest.raises(BackfillError, match="rejected"):
        strict.materialize([VIEW], start, END, chunk=timedelta(hours=3))
    st = Backfiller(platform).ledger.status(VIEW, Target.ONLINE)
    assert st.watermark == bad
    assert [e.status for e in st.pending] == [Status.REJECTED]
    # The next incremental run starts at the rejected chunk, not after it.
    [run] = Backfiller(platform).materialize_incremental([VIEW], END, chunk=timedelta(hours=3))
    assert run.ok and run.plan.start == bad and run.plan.kind == Kind.INCREMENTAL
    assert Backfiller(platform).ledger.status(VIEW, Target.ONLINE).watermark == END
    assert Backfiller(platform).materialize_incremental([VIEW], END) == []  # up to date
    # Platform API goes through the same path and reports per-chunk rows.
    result = platform.materialize(start, END, views=[VIEW], chunk=timedelta(hours=6), resume=True)
    assert result.chunks_skipped == result.chunks_skipped and result.chunks_done == 0


def test_warn_checks_commit_and_record_strict_checks_reject(make_repo):
    platform = make_repo()
    start, end = day_range(1)
    table = platform.repo_path / "data" / VIEW
    version = DeltaTable(str(table)).version()
    warn = ChunkCheck(
        lambda v, iv, data: ValidationOutcome(False, f"{data.num_rows} rows looked odd"), mode="warn"
    )
    result = Backfiller(platform, checks=[warn]).run(
        Backfiller(platform).plan(VIEW, start, end, to="offline")
    )
    assert result.ok and {c.validation for c in result.chunks} == {"warn"}
    assert "looked odd" in Backfiller(platform).ledger.latest(VIEW, Target.OFFLINE)[0].message
    strict = ChunkCheck(lambda v, iv, data: False, mode="strict")
    bf = Backfiller(platform, checks=[strict])
    result = bf.run(bf.plan(VIEW, start, end, to="both"))
    assert not result.ok and result.count(Status.REJECTED) == 4  # 2 chunks x (offline, online)
    assert DeltaTable(str(table)).version() == version + 2  # only the warn run committed


def test_non_utc_range_across_dst_and_a_month_end_replaces_exactly_that_range(make_repo):
    platform = make_repo(days=12, end=parse_time("2026-03-11"))
    bf = Backfiller(platform)
    # New York: EST (-05:00) on Feb 28, EDT (-04:00) after the switch on Mar 8.
    start, end = "2026-02-28T20:00:00-05:00", "2026-03-09T02:00:00-04:00"
    before = offline_rows(platform)
    plan = bf.plan(VIEW, start, end, to="offline")
    assert (plan.start, plan.end) == (parse_time("2026-03-01T01:00:00Z"), parse_time("2026-03-09T06:00:00Z"))
    assert len(plan.chunks) == 9 and plan.chunks[1].interval.start == parse_time("2026-03-02")
    result = bf.run(plan)
    assert result.ok
    in_range = [ts for ts in before["event_timestamp"].to_pylist() if plan.start <= ts < plan.end]
    assert sum(c.rows_written for c in result.chunks) == len(in_range) > 0
    assert offline_rows(platform).equals(before)


def test_an_aggregation_view_is_refused_offline_with_a_pointer_to_the_tile_rebuild(make_repo, capsys):
    """An aggregation view stores no feature rows: its offline values are computed from the raw events
    at retrieval. ``--to offline`` and ``--to both`` (the CLI's default) are refused before anything
    is planned, leased or recorded, with the command that does apply (``--to online``)."""
    from fs_platform.cli.main import main

    platform = make_repo()
    bf = Backfiller(platform)
    start, end = day_range(1)
    for to in ("offline", "both"):
        with pytest.raises(BackfillError, match="'customer_txn_aggregates' is an aggregation view") as err:
            bf.plan("customer_txn_aggregates", start, end, to=to)
        assert "--to online" in str(err.value) and "\n" not in str(err.value)
    assert bf.ledger.entries() == [] and bf.leases.holder("customer_txn_aggregates") is None
    code = main(
        [
            "--repo",
            str(platform.repo_path),
            "backfill",
            "merchant_txn_aggregates",
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "'merchant_txn_aggregates' is an aggregation view" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert bf.ledger.entries() == []
