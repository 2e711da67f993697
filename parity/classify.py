"""Why an online value differs from the offline one: one class per (entity, feature).

Timestamps decide the class; values are compared only when both sides hold the same event. The
decision, for the online row (served / held but past ttl / absent) and the newest offline row at
``as_of`` (live / past ttl / absent)::

    online served, event older than as_of - ttl  -> ttl_expired      online served a value the ttl forbids
    online served, offline live, same event      -> compare values   matched | value_mismatch | type_mismatch
      ... and the offline row created later      -> compare values   matched | online_stale (a correction of
                                                                     that event not materialized yet)
    online served, offline live, older event     -> online_stale     materialization/stream write missing
    online served, newer event than offline      -> online_ahead     if the event is after as_of (written
                                                                     since: online is read live, offline is
                                                                     cut at as_of), or younger than the
                                                                     allowed lag at the read (in flight)
                                                    missing_offline  otherwise (the offline write was lost)
    online served, event later than the read     -> online_future    event times from the future (a producer
                                                                     clock ahead, a bad event-time field)
    online not served, offline live              -> online_stale     if online holds an older, expired row
                                                    ttl_expired      if the offline row's ttl ran out before
                                                                     the read (Redis dropped the key since a
                                                                     past as_of: not checkable, tolerated)
                                                    missing_online   otherwise
    online not served, offline past ttl          -> ttl_expired      both sides null: tolerated
    nothing on either side                       -> matched          both sides agree there is no value

The online store keeps no history: it is read at the time of the check (``read_us``) with the ttl
evaluated at ``as_of``. So at a past ``as_of`` a value written after ``as_of`` or a key expired
before the read says nothing about ``as_of``; both are tolerated instead of reported as breaches.
The allowed lag is measured at the read too: by then the offline copy of an older event must be
there, whatever ``as_of`` is.

Tolerated outcomes (``online_ahead``; ``ttl_expired`` with nothing served) are counted and shown
but do not count towards a breach: training would have seen the same, or the offline copy will
catch up within the allowed lag.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Outcome(IntEnum):
    """Per (entity, feature) outcome; ``MATCHED`` is not a mismatch, every other member is."""

    MATCHED = 0
    MISSING_ONLINE = 1
    MISSING_OFFLINE = 2
    ONLINE_STALE = 3
    ONLINE_AHEAD = 4
    TTL_EXPIRED = 5
    VALUE_MISMATCH = 6
    TYPE_MISMATCH = 7
    ONLINE_FUTURE = 8

    @property
    def label(self) -> str:
        return self.name.lower()


MISMATCH_CLASSES = tuple(o for o in Outcome if o is not Outcome.MATCHED)
COMPARE = -1  # row-level marker: same event on both sides, the values decide
COMPARE_STALE = -2  # same event, but the offline row was created later: a value difference is online_stale

# Online read states (see parity.online).
SERVED, HELD_EXPIRED, ABSENT = 0, 1, 2


@dataclass(frozen=True)
class RowSides:
    """Aligned per-entity arrays for one view (microsecond timestamps, UTC)."""

    online_state: np.ndarray  # int8: SERVED | HELD_EXPIRED | ABSENT
    online_us: np.ndarray  # int64; meaningful unless ABSENT
    offline_present: np.ndarray  # bool: any offline row at or before as_of
    offline_us: np.ndarray  # int64; meaningful where offline_present
    # Created times (int64 µs), where both sides have them: the offline one's null is INT64_MIN (loses).
    online_created_us: np.ndarray | None = None
    offline_created_us: np.ndarray | None = None


def classify_rows(
    sides: RowSides,
    as_of_us: int,
    ttl_us: int | None,
    allowed_lag_us: int,
    future_us: int | None = None,
    read_us: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row-level classes (``COMPARE`` where values decide) and the tolerated mask. ``future_us``:
    online events later than this are ``online_future`` (the check passes its read time plus a skew).
    ``read_us``: when online (and offline) were read (default ``as_of_us``)."""
    read_us = as_of_us if read_us is None else read_us
    on_state, on_us = sides.online_state, sides.online_us
    off_present, off_us = sides.offline_present, sides.offline_us
    served = on_state == SERVED
    held = on_state == HELD_EXPIRED
    cutoff = as_of_us - ttl_us if ttl_us else None
    off_live = off_present & (off_us >= cutoff) if cutoff is not None else off_present.copy()
    on_past_ttl = served & (on_us < cutoff) if cutoff is not None else np.zeros_like(served)
    # The offline copy of a stream write may lag by up to the allowed lag; later than that it is lost.
    # An event after as_of was written since: offline is cut at as_of, so it cannot be there.
    in_flight = (on_us >= read_us - allowed_lag_us) | (on_us > as_of_us)
    newer_online = served & (~off_live | (on_us > off_us))
    # Live at as_of, but its ttl ran out before the read: Redis dropped the key since (PXAT event + ttl).
    expired_since = ~served & off_live & (off_us + ttl_us <= read_us) if ttl_us else np.zeros_like(served)

    out = np.full(len(on_state), Outcome.MATCHED, dtype=np.int8)
    tolerated = np.zeros(len(on_state), dtype=bool)
    # Later assignments win, so the list runs from the least to the most specific condition.
    both_expired = ~served & ~off_live & (off_present | held)
    out[both_expired] = Outcome.TTL_EXPIRED
    tolerated[both_expired] = True
    out[~served & off_live] = Outcome.MISSING_ONLINE
    out[expired_since] = Outcome.TTL_EXPIRED
    tolerated[expired_since] = True
    out[~served & off_live & held & (on_us < off_us)] = Outcome.ONLINE_STALE
    out[served & off_live & (on_us < off_us)] = Outcome.ONLINE_STALE
    same_event = served & off_live & (on_us == off_us)
    out[same_event] = COMPARE
    if sides.online_created_us is not None and sides.offline_created_us is not None:
        out[same_event & (sides.online_created_us < sides.offline_created_us)] = COMPARE_STALE
    out[newer_online & in_flight] = Outcome.ONLINE_AHEAD
    tolerated[newer_online & in_flight] = True
    out[newer_online & ~in_flight] = Outcome.MISSING_OFFLINE
    out[on_past_ttl] = Outcome.TTL_EXPIRED
    tolerated[on_past_ttl] = False
    if future_us is not None:
        future = served & (on_us > future_us)
        out[future] = Outcome.ONLINE_FUTURE
        tolerated[future] = False
    return out, tolerated
