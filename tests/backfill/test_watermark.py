"""#14.6: a manual ``fs materialize`` of an older range never moves the incremental watermark back.
Real Delta ledger, Delta tables, Sail Spark and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fs_platform.backfill.model import Target
from fs_platform.backfill.runner import Backfiller
from tests.backfill.conftest import END, ROLLING_VIEW

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VIEW = ROLLING_VIEW


def test_a_manual_materialize_of_an_older_range_keeps_the_watermark(make_repo):
    """The README's sequence on a fresh ledger: materialize the recent days, then an older day by hand;
    the next incremental run has nothing to do (it redid every chunk since the older day before)."""
    platform = make_repo()
    recent = (END - timedelta(days=1)).replace(hour=0)
    platform.materialize(recent, END, views=[VIEW])
    assert Backfiller(platform).ledger.status(VIEW, Target.ONLINE).watermark == END
    older = recent - timedelta(days=2)
    platform.materialize(older, older + timedelta(days=1), views=[VIEW])
    assert Backfiller(platform).ledger.status(VIEW, Target.ONLINE).watermark == END
    assert platform.materialize_incremental(END, views=[VIEW]).chunks_done == 0
