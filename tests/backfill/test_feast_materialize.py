"""#20.3: ``feast materialize`` (Feast's ``store.materialize`` through ``RedisArrowEngine``) has the
semantics of ``fs materialize``: half-open ``[start, end)``, chunks recorded in the backfill ledger,
the view's lease. Before, the engine pulled ``[start, end]`` in one go (a row at exactly ``end`` was
written) and recorded nothing. Real Delta tables, Sail Spark and the machine's Redis."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from fs_platform.backfill.model import Kind, Status, Target
from fs_platform.backfill.runner import Backfiller
from fs_platform.errors import LeaseHeldError
from tests.backfill.conftest import END, ROLLING_VIEW

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VIEW = ROLLING_VIEW
FEATURE = "txn_count_1h"
MARKER = 999_999


def _add_row_at_end(platform) -> tuple[int, int]:
    """Append a row at exactly END for the customer with the latest row before it; returns
    (customer, the feature value of that latest row)."""
    location = str(platform.repo_path / "data" / VIEW)
    table = DeltaTable(location).to_pyarrow_table()
    rows = sorted(table.to_pylist(), key=lambda r: r["event_timestamp"])
    last = [r for r in rows if r["event_timestamp"] < END][-1]
    write_deltalake(
        location,
        pa.Table.from_pylist(
            [{**last, "event_timestamp": END, "created_at": END, FEATURE: MARKER}],
            schema=table.schema,
        ),
        mode="append",
    )
    return last["customer_id"], last[FEATURE]


def _online(platform, customer: int):
    rows = platform.store.get_online_features([f"{VIEW}:{FEATURE}"], [{"customer_id": customer}]).to_dict()
    return rows[FEATURE][0]


def test_feast_materialize_stops_before_the_end_and_records_its_chunks(make_repo):
    platform = make_repo(days=2)
    customer, expected = _add_row_at_end(platform)
    start = (END - timedelta(days=1)).replace(hour=0)

    platform.store.materialize(start, END, [VIEW])  # what `feast materialize START END` runs

    assert _online(platform, customer) == expected != MARKER  # the row at END belongs to the next run
    ledger = Backfiller(platform).ledger
    status = ledger.status(VIEW, Target.ONLINE)
    assert status.watermark == END and not status.pending
    entries = [e for e in ledger.entries(VIEW, Target.ONLINE) if e.status == Status.DONE]
    assert entries and {e.kind for e in entries} == {Kind.MATERIALIZE}
    # The same chunks as `fs materialize` over the same range: a resumed fs run has nothing left to do.
    again = platform.materialize(start, END, views=[VIEW], resume=True)
    assert again.chunks_done == 0 and again.chunks_skipped == len(entries)

    # The next range picks the END row up, as `fs materialize` would.
    platform.store.materialize(END, END + timedelta(hours=1), [VIEW])
    assert _online(platform, customer) == MARKER


def test_feast_materialize_respects_the_views_lease(make_repo):
    platform = make_repo(days=1)
    with Backfiller(platform).leases.acquire(VIEW, "ci-runner-7"):
        with pytest.raises(LeaseHeldError, match="ci-runner-7"):
            platform.store.materialize(END - timedelta(hours=6), END, [VIEW])


def test_feast_materialize_of_several_views_opens_one_platform(make_repo, monkeypatch):
    """Feast submits every view's task in one call (``supports_batch``); the engine runs them all on one
    platform (registry, clients, Spark session) instead of opening one per view."""
    from fs_platform.platform import Platform

    platform = make_repo(days=2)
    opened = []
    real = Platform.for_config.__func__

    def counting(cls, config, *args, **kwargs):
        opened.append(config.project)
        return real(cls, config, *args, **kwargs)

    monkeypatch.setattr(Platform, "for_config", classmethod(counting))
    start = (END - timedelta(days=1)).replace(hour=0)
    views = [VIEW, "merchant_risk_daily", "customer_profile"]
    platform.store.materialize(start, END, views)

    assert len(opened) == 1
    ledger = Backfiller(platform).ledger
    assert all(ledger.status(v, Target.ONLINE).watermark == END for v in views)
