"""The examples of a ``check`` report: the worst rows per class, one per entity where possible, each
with a one-line explanation of its class (``detail``) that never contains a feature value."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fs_platform.governance.pii import mask
from fs_platform.parity.classify import ABSENT, SERVED, Outcome
from fs_platform.parity.report import MASK, Example
from fs_platform.parity.targets import Target
from fs_platform.timeutil import from_epoch_micros

if TYPE_CHECKING:
    from fs_platform.parity.check import Aligned


def worst_examples(
    target: Target, a: Aligned, candidates, as_of_us, ttl_us, lag_us, limit: int, read_us: int
) -> list[Example]:
    """The worst ``limit`` examples per class, one per entity where possible."""
    out: list[Example] = []
    per_class: dict[int, list] = {}
    for c in sorted(candidates):
        per_class.setdefault(c[0], []).append(c)
    key_columns = {k: a.keys[k].to_pylist() for k in target.join_keys}
    for code, items in per_class.items():
        seen_rows: set[int] = set()
        picked = [c for c in items if not (c[2] in seen_rows or seen_rows.add(c[2]))][:limit]
        for _, _, i, feature in picked:
            out.append(
                _example(target, a, Outcome(code), i, feature, key_columns, as_of_us, ttl_us, lag_us, read_us)
            )
    return out


def _example(
    target,
    a: Aligned,
    outcome: Outcome,
    i: int,
    feature: str,
    key_columns,
    as_of_us,
    ttl_us,
    lag_us,
    read_us,
) -> Example:
    sensitive = feature in target.sensitive
    on_state = int(a.online.state[i])
    on_value = a.online.values[feature][i] if on_state == SERVED else None
    off_value = a.offline_values[feature][i] if a.offline_present[i] else None
    on_us = int(a.online.event_us[i]) if on_state != ABSENT else None
    off_us = int(a.offline_us[i]) if a.offline_present[i] else None
    return Example(
        view=target.name,
        feature=feature,
        outcome=outcome.label,
        entity={k: mask(v[i]) if k in target.masked_keys else v[i] for k, v in key_columns.items()},
        online_value=MASK if sensitive and on_value is not None else on_value,
        offline_value=MASK if sensitive and off_value is not None else off_value,
        online_ts=_dt(on_us),
        offline_ts=_dt(off_us),
        detail=detail(
            outcome,
            on_state,
            on_us,
            off_us,
            on_value,
            target.types[target.features.index(feature)].name,
            as_of_us,
            ttl_us,
            lag_us,
            read_us,
        ),
    )


def _dt(us: int | None) -> datetime | None:
    return None if us is None else from_epoch_micros(us)


def _span(us: int) -> str:
    seconds = abs(us) // 1_000_000
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    return "".join(parts) or f"{seconds}s"


def detail(
    outcome: Outcome, on_state, on_us, off_us, on_value, dtype: str, as_of_us, ttl_us, lag_us, read_us=None
) -> str:
    """One line explaining the class; never contains a feature value. Ages are at the online read
    (``read_us``; the check's as_of when not given), which is where the allowed lag is measured."""
    lag = _span(lag_us) if lag_us else "0s"
    read_us = as_of_us if read_us is None else read_us
    if outcome is Outcome.MISSING_ONLINE:
        return "offline has a live row; online has none (never written, deleted or evicted)"
    if outcome is Outcome.MISSING_OFFLINE:
        where = (
            "is not in the offline table"
            if off_us is None
            else f"is not in the offline table (its newest row is {_span(on_us - off_us)} older)"
        )
        return f"online event {_span(read_us - on_us)} old, more than the allowed lag {lag}, {where}"
    if outcome is Outcome.ONLINE_STALE:
        if on_us == off_us:
            return (
                "same event on both sides, but the offline row was created later "
                "(a correction not materialized yet)"
            )
        held = " (and past its ttl)" if on_state != SERVED else ""
        return f"online row{held} is {_span(off_us - on_us)} older than the newest offline row"
    if outcome is Outcome.ONLINE_FUTURE:
        return f"online event is {_span(on_us - as_of_us)} after as_of, later than the time it was read"
    if outcome is Outcome.ONLINE_AHEAD:
        if on_us > as_of_us:
            return (
                f"online event is {_span(on_us - as_of_us)} after as_of: written since (online is read live, "
                "offline is cut at as_of)"
            )
        behind = (
            f"offline's newest row is {_span(on_us - off_us)} older"
            if off_us is not None
            else "not offline yet"
        )
        return f"online event {_span(read_us - on_us)} old, within the allowed lag {lag}; {behind}"
    if outcome is Outcome.TTL_EXPIRED:
        if on_state == SERVED:
            return f"online served a value {_span(as_of_us - ttl_us - on_us)} past the ttl {_span(ttl_us)}"
        if off_us is not None and off_us >= as_of_us - ttl_us:
            return (
                f"offline row live at as_of, but its ttl {_span(ttl_us)} ran out "
                f"{_span(read_us - off_us - ttl_us)} before the online read, so online no longer holds it "
                "(no history online): not checkable at this as_of"
            )
        newest = max(x for x in (on_us, off_us) if x is not None)
        return (
            f"newest value is {_span(as_of_us - ttl_us - newest)} past the ttl {_span(ttl_us)}: "
            "both sides serve null"
        )
    if outcome is Outcome.TYPE_MISMATCH:
        return f"online value is a {type(on_value).__name__}, the feature is {dtype}"
    return "same event on both sides, different values"
