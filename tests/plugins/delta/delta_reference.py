"""An independent, deliberately naive point-in-time join: loops over entity rows in plain pandas.

Rules (Feast's file/dask store): match on all join keys (a null key never matches);
``entity_ts - ttl <= feature_ts <= entity_ts`` (both inclusive; ttl None/0 = no lower bound);
optionally ``created_ts <= entity_ts``; the winner has the largest feature_ts, then the largest
created_ts (null created loses). Rows with a null feature_ts never match.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd


def point_in_time(
    entity_df: pd.DataFrame,
    ts_col: str,
    features: pd.DataFrame,
    keys: list[str],
    feature_cols: list[str],
    ttl: timedelta | None,
    filter_by_created: bool = False,
    ts_field: str = "ts",
    created_field: str | None = "created",
) -> pd.DataFrame:
    """One row per entity row (same order) with the chosen feature values (None = no match)."""
    out = []
    entity_ts = pd.to_datetime(entity_df[ts_col], utc=True)
    feature_ts = pd.to_datetime(features[ts_field], utc=True)
    created = pd.to_datetime(features[created_field], utc=True) if created_field else None
    for i in range(len(entity_df)):
        row = entity_df.iloc[i]
        ets = entity_ts.iloc[i]
        best, best_rank = None, None
        for j in range(len(features)):
            f = features.iloc[j]
            if any(pd.isna(row[k]) or pd.isna(f[k]) or row[k] != f[k] for k in keys):
                continue
            t = feature_ts.iloc[j]
            if pd.isna(t) or pd.isna(ets) or t > ets or (ttl and t < ets - ttl):
                continue
            c = created.iloc[j] if created is not None else pd.NaT
            if filter_by_created and (pd.isna(c) or c > ets):
                continue
            rank = (t, pd.Timestamp.min.tz_localize("UTC") if pd.isna(c) else c)
            if best_rank is None or rank > best_rank:
                best, best_rank = j, rank
        out.append({c: (features.iloc[best][c] if best is not None else None) for c in feature_cols})
    return pd.DataFrame(out, columns=feature_cols)
