"""Warm-up of stateful transforms on assignment: history replayed so their aggregates come out as if
the partition had never changed hands."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from fs_platform.plugins.kafka_ingest.clients import history_reader
from fs_platform.plugins.kafka_ingest.config import IngestConfig

log = logging.getLogger(__name__)
_WARM_IDLE_S = 10


def warm_up(config: IngestConfig, warm: dict) -> None:
    """Replay ``[log start, committed)`` of each partition of ``warm`` (``{tp: (partition state,
    committed offset)}``) through its fresh transform, writing nothing. A separate group-less reader
    does it, so the member's own positions stay at the committed offsets. Records older (broker
    timestamp) than the transform's lookback are skipped."""
    reader = history_reader(config)
    now, now_ms = datetime.now(UTC), int(time.time() * 1000)
    try:
        reader.assign(list(warm))
        reader.seek_to_beginning(*warm)
        left = {tp for tp, (_, until) in warm.items() if reader.position(tp) < until}
        replayed, idle_since = 0, time.monotonic()
        while left and time.monotonic() - idle_since < _WARM_IDLE_S:
            for tp, records in reader.poll(timeout_ms=500).items():
                part, until = warm[tp]
                lookback = part.pipe.transform.lookback
                since_ms = now_ms - int(lookback.total_seconds() * 1000) if lookback else 0
                below = [rec for rec in records if rec.offset < until]
                if len(below) < len(records):
                    left.discard(tp)
                replay = [rec for rec in below if rec.timestamp >= since_ms]
                if replay:  # rows and dead letters are dropped: only the transform's state matters
                    part.pipe.process(tp, replay, now, part.hook, gate=False)
                replayed += len(below)
                if records and records[-1].offset + 1 >= until:
                    left.discard(tp)
                idle_since = time.monotonic()
        if left:
            log.warning("warm-up of %d partition(s) stopped early: no data for %ds", len(left), _WARM_IDLE_S)
        log.info("warm-up replayed %d record(s) into stateful transforms", replayed)
    finally:
        reader.close(autocommit=False)
