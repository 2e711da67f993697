"""Compute spans: adjacent chunks recomputed in one pass of the definition, committed one by one.

A span run must end exactly where a per-chunk run (``compute_span=1``) ends: same offline rows,
same online values, one Delta commit and one ``done`` ledger entry per chunk; a kill in the middle
of a pass loses only its uncommitted chunks, and ``--resume`` ends where an uninterrupted run ends.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from deltalake import DeltaTable

from fs_platform.backfill.model import Status, Target
from fs_platform.backfill.runner import Backfiller
from tests.backfill.conftest import day_range, kill_mid_run, wait_for
from tests.backfill.test_runner import VIEW, offline_rows, online_values

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SIX_HOURS = timedelta(hours=6)
CUSTOMERS = range(1, 151)


def _version(platform) -> int:
    return DeltaTable(str(platform.repo_path / "data" / VIEW)).version()


def _done(bf: Backfiller, target: Target) -> list:
    return [e.interval for e in bf.ledger.latest(VIEW, target) if e.status == Status.DONE]


def test_a_span_run_equals_a_per_chunk_run(make_repo):
    spanned, chunked = make_repo("spanned"), make_repo("chunked")
    start, end = day_range(2)
    ref = Backfiller(chunked)
    plan = ref.plan(VIEW, start, end, to="both", chunk=SIX_HOURS, compute_span=1)
    assert len(plan.spans) == len(plan.chunks) // 2  # one pass per chunk
    per_chunk = ref.run(plan)
    assert per_chunk.ok

    bf = Backfiller(spanned)
    plan = bf.plan(VIEW, start, end, to="both", chunk=SIX_HOURS, compute_span=5)
    intervals = sorted({c.interval for c in plan.chunks})
    assert len(plan.spans) == -(-len(intervals) // 5) and plan.spans[0].start == start
    version, events = _version(spanned), []
    result = bf.run(plan, progress=events.append)
    assert result.ok, [c.message for c in result.chunks]
    passes = [e for e in events if e.stage == "compute" and e.target == Target.OFFLINE]
    assert len(passes) == len(plan.spans) and passes[0].chunks > 1 and passes[0].interval == plan.spans[0]
    # Same tables as the per-chunk run; still one Delta commit and one done entry per chunk.
    assert offline_rows(spanned).equals(offline_rows(chunked))
    assert online_values(spanned, CUSTOMERS) == online_values(chunked, CUSTOMERS)
    assert _version(spanned) == version + len(intervals)
    for target in Target:
        assert _done(bf, target) == _done(ref, target) == intervals
    counts = lambda r: [(c.target, c.interval, c.rows_in, c.rows_written) for c in r.chunks]  # noqa: E731
    assert counts(result) == counts(per_chunk)  # same order, same rows per chunk

    # A rerun (spans again, now two workers) changes nothing.
    rerun = bf.run(bf.plan(VIEW, start, end, to="both", chunk=SIX_HOURS, compute_span=5), parallel=2)
    assert rerun.ok and offline_rows(spanned).equals(offline_rows(chunked))
    assert online_values(spanned, CUSTOMERS) == online_values(chunked, CUSTOMERS)


def test_a_failing_pass_is_recomputed_chunk_by_chunk_and_stops_where_a_per_chunk_run_stops(make_repo):
    spanned, chunked = make_repo("spanned"), make_repo("chunked")
    start, end = day_range(1)
    bad = start + 2 * SIX_HOURS  # the definition fails for any window that reaches past this
    failing = f"""
from dataclasses import replace as _replace
from fs_platform.timeutil import parse_time as _parse_time

_recompute = customer_txn_rolling.function

def _fails_late(ctx):  # test hook: any window reaching past {bad.isoformat()} fails
    if ctx.end > _parse_time("{bad.isoformat()}"):
        raise RuntimeError("synthetic failure")
    return _recompute(ctx)

customer_txn_rolling = _replace(customer_txn_rolling, function=_fails_late)
"""
    results = {}
    for platform, span in ((chunked, 1), (spanned, 8)):
        with open(platform.repo_path / "backfills.py", "a") as fh:
            fh.write(failing)
        bf = Backfiller(platform)
        results[span] = (
            bf,
            bf.run(bf.plan(VIEW, start, end, to="offline", chunk=SIX_HOURS, compute_span=span)),
        )
    (ref, per_chunk), (bf, spanned_result) = results[1], results[8]
    assert not per_chunk.ok and not spanned_result.ok
    assert (
        _done(bf, Target.OFFLINE)
        == _done(ref, Target.OFFLINE)
        == [c.interval for c in per_chunk.chunks if c.status == Status.DONE]
    )
    assert len(_done(bf, Target.OFFLINE)) == 2
    failed = [c for c in spanned_result.chunks if c.status == Status.FAILED]
    assert "synthetic failure" in failed[0].message  # the failing chunk's own error, not the pass's
    # The rest of the pass is recorded as not committed, not left "running".
    assert all("not committed" in c.message for c in failed[1:])
    assert offline_rows(spanned).equals(offline_rows(chunked))


def test_killed_mid_span_then_resumed_equals_an_uninterrupted_run(make_repo):
    killed, reference = make_repo("killed", lease_ttl=5), make_repo("reference")
    start, end = day_range(1)
    args = ["--start", start.isoformat(), "--end", end.isoformat(), "--to", "both", "--chunk", "6h"]
    kill_mid_run(killed, VIEW, [*args, "--compute-span", "8"])  # every chunk of the range in one pass
    bf = Backfiller(killed)
    plan = bf.plan(VIEW, start, end, to="both", chunk=SIX_HOURS, resume=True)
    intervals = sorted({c.interval for c in plan.chunks})
    # Killed inside the pass: the committed chunks are done, every later chunk of it still "running".
    offline = bf.ledger.latest(VIEW, Target.OFFLINE)
    committed = _done(bf, Target.OFFLINE)
    assert 2 <= len(committed) < len(intervals) and committed == intervals[: len(committed)]
    assert [e.status for e in offline if e.status != Status.DONE] == [Status.RUNNING] * (
        len(intervals) - len(committed)
    )
    assert 0 < len(plan.to_run) < len(plan.chunks)
    wait_for(lambda: bf.leases.holder(VIEW) is None, 10, "the dead run's lease to expire")
    assert bf.run(plan).ok

    ref = Backfiller(reference)
    assert ref.run(ref.plan(VIEW, start, end, to="both", chunk=SIX_HOURS, compute_span=1)).ok
    assert offline_rows(killed).equals(offline_rows(reference))
    assert online_values(killed, CUSTOMERS) == online_values(reference, CUSTOMERS)
    for target in Target:
        assert bf.ledger.status(VIEW, target).pending == ()
        assert _done(bf, target) == intervals


def _two_day_run(make_repo, tmp_path, name: str, first_day_fails: bool):
    """A repo and a plan of two days, one compute pass each, whose second day's pass waits until
    ``marker`` exists (the first day's worker has failed), then a second more, then recomputes as
    usual. Returns (backfiller, plan, mid, marker, platform)."""
    platform = make_repo(name)
    start = day_range(2)[0]
    mid, end = start + timedelta(days=1), start + timedelta(days=2)
    marker = tmp_path / f"{name}-first-day-failed"
    fail = 'raise RuntimeError("synthetic failure")' if first_day_fails else "return _recompute(ctx)"
    with open(platform.repo_path / "backfills.py", "a") as fh:
        fh.write(f"""
import time as _time
from dataclasses import replace as _replace
from pathlib import Path as _Path
from fs_platform.timeutil import parse_time as _parse_time

_recompute = customer_txn_rolling.function
_MARKER, _MID = _Path({str(marker)!r}), _parse_time("{mid.isoformat()}")

def _hooked(ctx):
    if ctx.start < _MID:
        _MARKER.touch()
        {fail}
    deadline = _time.monotonic() + 60
    while not _MARKER.exists() and _time.monotonic() < deadline:
        _time.sleep(0.05)
    _time.sleep(1.0)  # the failed worker records its chunks and stops the run meanwhile
    return _recompute(ctx)

customer_txn_rolling = _replace(customer_txn_rolling, function=_hooked)
""")
    bf = Backfiller(platform)
    plan = bf.plan(VIEW, start, end, to="offline", chunk=SIX_HOURS, compute_span=4)
    assert [(s.start, s.end) for s in plan.spans] == [(start, mid), (mid, end)]
    return bf, plan, mid, marker, platform


def test_a_failure_stops_a_parallel_workers_pass_before_it_commits_more(make_repo, tmp_path):
    """Two workers, one compute pass each: the first day's pass fails; the second day's pass, still
    computing, must then commit none of its chunks (recorded failed, so ``--resume`` redoes them)."""
    bf, plan, mid, marker, _ = _two_day_run(make_repo, tmp_path, "parallel", first_day_fails=True)
    result = bf.run(plan, parallel=2)

    assert not result.ok and marker.exists()
    second_day = [c for c in result.chunks if c.interval.start >= mid]
    assert second_day and all(c.status == Status.FAILED for c in second_day), [c.status for c in second_day]
    assert all("run stopped" in c.message for c in second_day)
    assert _done(bf, Target.OFFLINE) == []
    assert len(bf.plan(VIEW, plan.start, plan.end, to="offline", chunk=SIX_HOURS, resume=True).to_run) == 8


def test_an_exception_in_one_parallel_worker_stops_the_others_and_reaches_the_caller(make_repo, tmp_path):
    """Not a failed chunk but an error outside one (here the ledger refuses the first day's
    ``running`` entries): the run raises it, the other worker commits nothing more, the lease is
    released, and ``--resume`` redoes every chunk."""
    bf, plan, mid, marker, platform = _two_day_run(make_repo, tmp_path, "parallel-exc", first_day_fails=False)
    record = bf.ledger.record

    def ledger_refusing_the_first_day(entries):
        entries = list(entries)
        if any(e.status == Status.RUNNING and e.start < mid for e in entries):
            marker.touch()
            raise OSError("ledger unwritable")
        record(entries)

    bf.ledger.record = ledger_refusing_the_first_day
    version = _version(platform)
    with pytest.raises(OSError, match="ledger unwritable"):
        bf.run(plan, parallel=2)

    assert marker.exists() and _version(platform) == version  # the second day committed nothing
    assert _done(bf, Target.OFFLINE) == []
    # Abandoned after its pass (failed), or never started if the stop came first (still planned).
    second_day = [e for e in bf.ledger.latest(VIEW, Target.OFFLINE) if e.start >= mid]
    assert len(second_day) == 4 and {e.status for e in second_day} <= {Status.FAILED, Status.PLANNED}
    assert bf.leases.holder(VIEW) is None
    assert len(bf.plan(VIEW, plan.start, plan.end, to="offline", chunk=SIX_HOURS, resume=True).to_run) == 8
