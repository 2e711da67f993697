"""The Delta ledger: latest state per chunk, done coverage, the incremental watermark."""

from datetime import timedelta

import pyarrow as pa

from fs_platform.backfill.ledger import Ledger
from fs_platform.backfill.model import Kind, LedgerEntry, Status, Target
from fs_platform.timeutil import parse_time, utcnow

DAY = timedelta(days=1)
T0 = parse_time("2026-11-01")


def entry(i: int, status: Status, kind=Kind.INCREMENTAL, days: int = 1) -> LedgerEntry:
    return LedgerEntry(
        run_id="r",
        view="v",
        target=Target.ONLINE,
        kind=kind,
        start=T0 + i * DAY,
        end=T0 + (i + days) * DAY,
        status=status,
        holder="test",
        recorded_at=utcnow(),
        rows_in=10,
        rows_written=7,
        rows_skipped=3,
    )


def test_entries_round_trip_and_latest_state_wins(tmp_path):
    ledger = Ledger(str(tmp_path / "ledger"))
    assert ledger.entries() == [] and ledger.status("v", Target.ONLINE).watermark is None
    ledger.record([entry(0, Status.RUNNING)])
    ledger.record([entry(0, Status.DONE)])
    [only] = ledger.latest("v", Target.ONLINE)
    assert only.status == Status.DONE and (only.rows_written, only.rows_skipped) == (7, 3)
    assert only.start.tzinfo is not None
    assert ledger.views() == ["v"]


def test_watermark_moves_only_over_completed_chunks(tmp_path):
    ledger = Ledger(str(tmp_path / "ledger"))
    ledger.record([entry(0, Status.DONE), entry(1, Status.DONE), entry(2, Status.RUNNING)])
    st = ledger.status("v", Target.ONLINE)
    assert st.watermark == T0 + 2 * DAY  # the interrupted chunk is not done
    assert [e.status for e in st.pending] == [Status.RUNNING]
    # A later chunk succeeded but an earlier one failed: the watermark stays at the hole.
    ledger.record([entry(2, Status.FAILED), entry(3, Status.DONE)])
    assert ledger.status("v", Target.ONLINE).watermark == T0 + 2 * DAY
    # A rerun with a bigger chunk covers the hole: settled.
    ledger.record([entry(2, Status.DONE, days=2)])
    st = ledger.status("v", Target.ONLINE)
    assert st.watermark == T0 + 4 * DAY and st.pending == ()
    assert [(i.start, i.end) for i in st.done] == [(T0, T0 + 4 * DAY)]


def test_backfills_do_not_move_the_incremental_watermark(tmp_path):
    ledger = Ledger(str(tmp_path / "ledger"))
    ledger.record([entry(0, Status.DONE), entry(5, Status.DONE, kind=Kind.BACKFILL)])
    assert ledger.status("v", Target.ONLINE).watermark == T0 + DAY


def test_forget_drops_only_the_given_views_entries_for_the_target(tmp_path):
    ledger = Ledger(str(tmp_path / "ledger"))
    ledger.forget(["v"], Target.ONLINE)  # no ledger yet: nothing to do
    offline = LedgerEntry(**{**entry(0, Status.DONE).__dict__, "target": Target.OFFLINE})
    other = LedgerEntry(**{**entry(0, Status.DONE).__dict__, "view": "w"})
    ledger.record([entry(0, Status.DONE), offline, other])
    ledger.forget(["v"], Target.ONLINE)
    assert [(e.view, e.target) for e in ledger.entries()] == [("v", Target.OFFLINE), ("w", Target.ONLINE)]
    assert ledger.status("v", Target.ONLINE).watermark is None


def test_a_newer_unfinished_chunk_inside_an_older_done_range_is_no_longer_done(tmp_path):
    """Coverage follows recording order: an old 1-day done chunk, then a 6-hour chunk of a later run
    that failed (or was only planned): that part must be redone, whatever the chunk sizes."""
    ledger = Ledger(str(tmp_path / "ledger"))
    ledger.record([entry(0, Status.DONE, days=3)])
    six = LedgerEntry(**{**entry(1, Status.FAILED).__dict__, "end": T0 + DAY + timedelta(hours=6)})
    ledger.record([six])
    assert [(i.start, i.end) for i in ledger.done("v", Target.ONLINE)] == [
        (T0, T0 + DAY),
        (T0 + DAY + timedelta(hours=6), T0 + 3 * DAY),
    ]
    assert [e.status for e in ledger.status("v", Target.ONLINE).pending] == [Status.FAILED]
    # A later run planned days 0-2 and finished day 0 only before it died: days 1-2 are not done.
    ledger.record([entry(i, Status.PLANNED) for i in range(3)])
    ledger.record([entry(0, Status.DONE)])
    assert [(i.start, i.end) for i in ledger.done("v", Target.ONLINE)] == [(T0, T0 + DAY)]


def test_the_watermark_stops_at_a_range_never_materialized_between_incremental_runs(tmp_path):
    ledger = Ledger(str(tmp_path / "ledger"))
    ledger.record([entry(i, Status.DONE) for i in range(5)])  # incremental up to day 5
    ledger.record([entry(10, Status.DONE, kind=Kind.MATERIALIZE)])  # a manual run of day 10
    assert ledger.status("v", Target.ONLINE).watermark == T0 + 5 * DAY
    # Manual materializations before the incremental runs began do not hold it back.
    old = LedgerEntry(
        **{
            **entry(0, Status.DONE, kind=Kind.MATERIALIZE).__dict__,
            "start": T0 - 60 * DAY,
            "end": T0 - 59 * DAY,
        }
    )
    ledger.record([old, *[entry(i, Status.DONE) for i in range(5, 10)]])
    assert ledger.status("v", Target.ONLINE).watermark == T0 + 11 * DAY


def test_resume_of_a_both_backfill_rewrites_online_wherever_it_recomputes_offline(tmp_path):
    from fs_platform.backfill.plan import build_plan

    ledger = Ledger(str(tmp_path / "ledger"))
    ledger.record([entry(0, Status.DONE, kind=Kind.BACKFILL, days=2)])  # an earlier --to online run
    offline_day0 = LedgerEntry(
        **{**entry(0, Status.DONE, kind=Kind.BACKFILL).__dict__, "target": Target.OFFLINE}
    )
    ledger.record([offline_day0])
    plan = build_plan(
        ledger,
        "v",
        Kind.BACKFILL,
        (Target.OFFLINE, Target.ONLINE),
        T0,
        T0 + 2 * DAY,
        DAY,
        resume=True,
        estimate=lambda *_: None,
    )
    runs = {(c.target, c.interval.start): c.will_run for c in plan.chunks}
    assert runs == {
        (Target.OFFLINE, T0): False,
        (Target.OFFLINE, T0 + DAY): True,
        (Target.ONLINE, T0): False,
        (Target.ONLINE, T0 + DAY): True,
    }
    assert [c.target for c in plan.chunks] == [Target.OFFLINE] * 2 + [Target.ONLINE] * 2


def test_a_host_whose_clock_is_behind_still_records_after_what_it_has_read(tmp_path):
    """Run A's host clock is an hour ahead; run B, later, on a host with the right time, fails on
    the same chunk. B's entry must count as the newer one, or the chunk would still look done."""
    from dataclasses import replace

    path = str(tmp_path / "ledger")
    Ledger(path).record([replace(entry(0, Status.DONE), recorded_at=utcnow() + timedelta(hours=1))])
    later = Ledger(path)
    later.record([entry(0, Status.FAILED)])
    for reader in (later, Ledger(path)):
        [only] = reader.latest("v", Target.ONLINE)
        assert only.status == Status.FAILED
        assert reader.status("v", Target.ONLINE).watermark is None
    # Entries given together keep their order even when their clock readings are equal.
    at = utcnow() + timedelta(hours=2)
    later.record(
        [replace(entry(1, Status.RUNNING), recorded_at=at), replace(entry(1, Status.DONE), recorded_at=at)]
    )
    assert [e.status for e in Ledger(path).latest("v", Target.ONLINE)] == [Status.FAILED, Status.DONE]


def test_superseded_planned_and_running_entries_do_not_pull_the_watermark_back(tmp_path):
    """#14.6: every run records its chunks ``planned`` and ``running`` before ``done``. A completed
    manual run of an older range leaves no hole, so the watermark stays at the newest done end."""
    ledger = Ledger(str(tmp_path / "ledger"))
    recent = [
        entry(i, s, kind=Kind.MATERIALIZE)
        for s in (Status.PLANNED, Status.RUNNING, Status.DONE)
        for i in (10, 11, 12)
    ]
    ledger.record(recent)
    assert ledger.status("v", Target.ONLINE).watermark == T0 + 13 * DAY
    ledger.record([entry(0, s, kind=Kind.MATERIALIZE) for s in (Status.PLANNED, Status.RUNNING, Status.DONE)])
    assert ledger.status("v", Target.ONLINE).watermark == T0 + 13 * DAY
    # A hole that is still open does hold it back: the older run's second day failed.
    ledger.record(
        [entry(1, Status.PLANNED, kind=Kind.MATERIALIZE), entry(1, Status.FAILED, kind=Kind.MATERIALIZE)]
    )
    assert ledger.status("v", Target.ONLINE).watermark == T0 + DAY


def test_scoped_ledgers_share_a_table_but_not_entries(tmp_path):
    """#14.5: dev and staging (or two tenants) record into one table; each sees, counts and forgets
    only its own scope. Offline entries are scoped by table location: shared tables, shared entries."""
    path = str(tmp_path / "ledger")

    def scopes(online_id: str):
        return lambda view, target: f"online:{online_id}" if target == Target.ONLINE else "offline:/t/" + view

    dev, staging = Ledger(path, scopes("dev")), Ledger(path, scopes("staging"))
    offline = LedgerEntry(**{**entry(0, Status.DONE).__dict__, "target": Target.OFFLINE})
    dev.record([entry(0, Status.DONE), entry(1, Status.DONE), offline])
    assert dev.status("v", Target.ONLINE).watermark == T0 + 2 * DAY
    assert staging.status("v", Target.ONLINE).watermark is None and staging.entries("v", Target.ONLINE) == []
    assert staging.done("v", Target.OFFLINE) == dev.done("v", Target.OFFLINE) != []
    staging.record([entry(0, Status.DONE)])
    staging.forget(["v"], Target.ONLINE)  # staging's teardown
    assert staging.entries("v", Target.ONLINE) == [] and staging.views() == ["v"]  # its offline entry stays
    assert dev.status("v", Target.ONLINE).watermark == T0 + 2 * DAY
    assert Ledger(path).entries() == []  # an unscoped ledger sees neither


def test_a_ledger_written_before_scopes_is_extended_and_its_entries_trusted_by_no_scope(tmp_path):
    from deltalake import write_deltalake

    from fs_platform.backfill.ledger import SCHEMA, _row

    path = str(tmp_path / "ledger")
    legacy = SCHEMA.remove(SCHEMA.get_field_index("scope"))
    write_deltalake(path, pa.Table.from_pylist([_row(entry(0, Status.DONE))], schema=legacy))
    scoped = Ledger(path, lambda view, target: "online:x")
    assert scoped.entries() == [] and scoped.status("v", Target.ONLINE).watermark is None
    scoped.record([entry(5, Status.DONE)])
    assert [e.start for e in scoped.entries()] == [T0 + 5 * DAY]
    assert [e.start for e in Ledger(path).entries()] == [T0]  # the old entry is still there, unscoped
    Ledger(path).forget(["v"], Target.ONLINE)
    assert Ledger(path).entries() == [] and len(scoped.entries()) == 1
