"""One view's ``skew`` report for one group of logged rows: each (row, feature) classified against the
offline values (the table in ``fs_platform.parity.skew``), and the worst examples."""

from __future__ import annotations

import numpy as np
import orjson

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.parity.check import FUTURE_SKEW_US
from fs_platform.parity.classify import Outcome
from fs_platform.parity.compare import Tolerances, compare_column
from fs_platform.parity.report import MASK, Example, FeatureStats, ViewReport
from fs_platform.parity.skew_log import Parsed, keyed
from fs_platform.parity.targets import Target
from fs_platform.timeutil import duration_micros, from_epoch_micros

_NOT_SERVED = {"NOT_FOUND", "OUTSIDE_MAX_AGE"}


def view_report(
    t: Target,
    parsed: Parsed,
    members: np.ndarray,
    offline: dict,
    held: set,
    versions: dict,
    tol: Tolerances,
    now_us: int,
    max_examples: int,
    pii_keys,
) -> ViewReport:
    ttl_us = duration_micros(t.ttl) if t.ttl else None
    lag_us = duration_micros(t.allowed_lag)
    aggregated = is_aggregation(t.view)
    plain = not aggregated  # a served event time is a row's event (tiles are merged at the read)
    rows = np.array([i for i in members if keyed(parsed, i, t, pii_keys)], dtype=np.int64)
    stats, candidates = [], []
    with_data = np.zeros(len(rows), dtype=bool)
    for f, vt in zip(t.features, t.types, strict=True):
        if f in t.sensitive:  # logged hashed or not at all: listed in the report's skipped
            continue
        s = FeatureStats(f, vt.name, False)
        if not len(rows):
            stats.append(s)
            continue
        at_served, at_event = offline[(t.name, f)]
        names = [parsed.name(i, t, f) for i in rows]
        status = [parsed.statuses[i].get(nm, "INVALID") for i, nm in zip(rows, names, strict=True)]
        keep = np.array([st != "INVALID" for st in status], dtype=bool)
        served = [parsed.features[i].get(nm) for i, nm in zip(rows, names, strict=True)]
        event = np.array(
            [parsed.event_us[i].get(nm) or 0 for i, nm in zip(rows, names, strict=True)], np.int64
        )
        off_t = [at_served[i] for i in rows]
        off_e = [at_event[i] for i in rows]
        served_at = parsed.served_us[rows]
        idx = np.arange(len(rows))
        codes_t, score = compare_column(vt, served, off_t, idx, tol.for_feature(t.name, f))
        equal_t = codes_t == Outcome.MATCHED
        has_e = np.array([v is not None for v in off_e]) & plain
        codes_e, _ = compare_column(vt, served, off_e, idx, tol.for_feature(t.name, f))
        equal_e = has_e & (codes_e == Outcome.MATCHED)
        not_served = np.array([st in _NOT_SERVED for st in status], dtype=bool)
        off_none = np.array([v is None for v in off_t], dtype=bool)
        has_event = np.array(
            [
                (*(parsed.entities[i][k] for k in t.join_keys), int(e)) in held
                for i, e in zip(rows, event, strict=True)
            ]
        )
        out = codes_t.copy()  # matched | value_mismatch | type_mismatch (aggregations: the whole story)
        tolerated = np.zeros(len(rows), dtype=bool)
        present = ~not_served
        wrong = present & ~equal_t
        if plain:
            lost = wrong & ~has_event  # offline never got the served event
            out[lost] = Outcome.MISSING_OFFLINE
            ahead = lost & (event >= now_us - lag_us)  # ... yet: within the allowed lag
            out[ahead] = Outcome.ONLINE_AHEAD
            tolerated[ahead] = True
            # offline holds the served event with the served value, and a newer one by the served time
            out[wrong & has_event & equal_e] = Outcome.ONLINE_STALE
            same = wrong & has_event & ~equal_e  # the same event, another value
            out[same] = codes_e[same]
            if ttl_us:
                out[present & (event > 0) & (event < served_at - ttl_us)] = Outcome.TTL_EXPIRED
            out[present & (event > served_at + FUTURE_SKEW_US)] = Outcome.ONLINE_FUTURE
        else:
            out[wrong & off_none] = Outcome.MISSING_OFFLINE
        out[not_served] = np.where(off_none[not_served], Outcome.MATCHED, Outcome.MISSING_ONLINE)
        stale = not_served & ~off_none & np.array([st == "OUTSIDE_MAX_AGE" for st in status])
        out[stale] = Outcome.ONLINE_STALE
        out, tolerated, score = out[keep], tolerated[keep], score[keep]
        with_data[keep] |= ~(not_served[keep] & off_none[keep])
        s.compared = len(out)
        for o in Outcome:
            if o is not Outcome.MATCHED:
                s.counts[o.label] = int(np.count_nonzero(out == o))
        s.tolerated = int(np.count_nonzero(tolerated & (out != Outcome.MATCHED)))
        stats.append(s)
        kept = np.flatnonzero(keep)
        for o in np.unique(out[out != Outcome.MATCHED]):
            worst = np.flatnonzero(out == o)
            seen: set[str] = set()  # one example per entity: a key served many times is shown once
            for j in worst[np.argsort(-score[worst], kind="stable")]:
                k = kept[j]
                entity = orjson.dumps([parsed.entities[rows[k]].get(key) for key in t.join_keys])
                if entity in seen or len(seen) >= max_examples:
                    continue
                seen.add(entity)
                candidates.append(
                    _example(
                        t,
                        f,
                        Outcome(int(o)),
                        parsed,
                        int(rows[k]),
                        served[k],
                        off_t[k],
                        int(event[k]),
                        pii_keys,
                    )
                )
    report = ViewReport(
        view=t.name,
        entities=len(rows),
        with_data=int(np.count_nonzero(with_data)),
        ttl_s=t.ttl.total_seconds() if t.ttl else None,
        allowed_lag_s=t.allowed_lag.total_seconds(),
        delta_version=versions.get(t.view.batch_source.name),
        features=stats,
    )
    report.examples = candidates
    return report


_DETAIL = {
    Outcome.MISSING_ONLINE: "offline had a live value at the served time; the server served none",
    Outcome.MISSING_OFFLINE: "the server served a value; offline has none at the served time",
    Outcome.ONLINE_STALE: "the server served an older event than offline holds at the served time",
    Outcome.ONLINE_AHEAD: "served event younger than the allowed lag: offline may not have it yet",
    Outcome.ONLINE_FUTURE: "served event time later than the served time",
    Outcome.TTL_EXPIRED: "served a value older than the view's ttl at the served time",
    Outcome.VALUE_MISMATCH: "served value differs from the offline point-in-time value at the served time",
    Outcome.TYPE_MISMATCH: "served value's type is not the feature's",
}


def _example(
    t: Target,
    feature: str,
    outcome: Outcome,
    parsed: Parsed,
    i: int,
    served,
    offline,
    event_us: int,
    pii_keys,
) -> Example:
    from fs_platform.governance.pii import mask

    sensitive = feature in t.sensitive
    entity = {
        k: mask(v) if k in t.masked_keys else v for k, v in parsed.entities[i].items() if k in t.join_keys
    }
    return Example(
        view=t.name,
        feature=feature,
        outcome=outcome.label,
        entity=entity,
        online_value=MASK if sensitive and served is not None else served,
        offline_value=MASK if sensitive and offline is not None else offline,
        online_ts=from_epoch_micros(event_us) if event_us else None,
        offline_ts=None,
        detail=f"{_DETAIL[outcome]} (request {parsed.request_id[i]}, served "
        f"{from_epoch_micros(int(parsed.served_us[i])).strftime('%Y-%m-%d %H:%M:%S')})",
    )
