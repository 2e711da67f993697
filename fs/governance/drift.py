"""Distribution drift of a view's features between two offline time windows.

- numeric: PSI over ``bins`` reference-quantile bins (outer bins open-ended, so every current
  value lands somewhere) and the two-sample Kolmogorov–Smirnov statistic;
- categorical (strings, booleans): PSI over categories (the reference's top 20, the rest "other").

A feature drifts when PSI > its ``psi`` threshold or KS > its ``ks`` threshold. Thresholds come
from the view's suite file (``meta.drift`` in ``expectations/<view>.json``: view defaults and
per-feature overrides), else PSI 0.2 / KS 0.1 — the usual "significant shift" levels. Nulls are
left out of the distributions and reported as null rates.

PII-classified features are compared like any other, but their category labels and bin edges
are masked in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from feast.value_type import ValueType

from fs_platform.errors import OfflineStoreError
from fs_platform.governance import expectations, metrics, offline
from fs_platform.governance.pii import mask
from fs_platform.metadata import sensitive_features
from fs_platform.views import feature_view

DEFAULTS = {"psi": 0.2, "ks": 0.1, "bins": 10}
TOP_CATEGORIES = 20
_EPS = 1e-4  # floor for empty bins, so PSI stays finite
_NUMERIC = {ValueType.INT32, ValueType.INT64, ValueType.FLOAT, ValueType.DOUBLE}
_CATEGORICAL = {ValueType.STRING, ValueType.BOOL}


@dataclass(frozen=True)
class Histogram:
    labels: list[str]
    reference: list[float]  # share of non-null rows per bin
    current: list[float]


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    psi: float
    ks: float | None
    ks_pvalue: float | None
    psi_threshold: float
    ks_threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_null_rate: float
    current_null_rate: float
    pii: bool
    histogram: Histogram


@dataclass(frozen=True)
class DriftReport:
    view: str
    reference: tuple[datetime, datetime]
    current: tuple[datetime, datetime]
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


# -- statistics ------------------------------------------------------------------------------
def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    r = np.clip(reference, _EPS, None)
    c = np.clip(current, _EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def numeric_histogram(
    ref: np.ndarray, cur: np.ndarray, bins: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    r, _ = np.histogram(ref, edges)
    c, _ = np.histogram(cur, edges)
    labels = [_bin_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return labels, _shares(r), _shares(c)


def _bin_label(lo: float, hi: float) -> str:
    def fmt(x: float) -> str:
        return ("-∞" if x < 0 else "∞") if math.isinf(x) else f"{x:.4g}"

    return f"[{fmt(lo)}, {fmt(hi)})"


def categorical_histogram(ref: pd.Series, cur: pd.Series) -> tuple[list, np.ndarray, np.ndarray]:
    ref_counts = ref.astype(str).value_counts()
    top = list(ref_counts.index[:TOP_CATEGORIES])
    cur_counts = cur.astype(str).value_counts()
    r = [ref_counts.get(k, 0) for k in top]
    c = [cur_counts.get(k, 0) for k in top]
    other_r, other_c = ref_counts.sum() - sum(r), cur_counts.sum() - sum(c)
    if other_r or other_c:
        top.append("(other)")
        r.append(other_r)
        c.append(other_c)
    return top, _shares(np.array(r, dtype=float)), _shares(np.array(c, dtype=float))


def ks_2samp(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from scipy import stats  # a GX dependency; imported only when numeric drift is computed

    res = stats.ks_2samp(ref, cur)
    return float(res.statistic), float(res.pvalue)


def feature_drift(
    name: str, kind: str, ref: pd.Series, cur: pd.Series, thresholds: dict, pii: bool
) -> FeatureDrift:
    ref_valid, cur_valid = ref.dropna(), cur.dropna()
    if kind == "numeric":
        r, c = ref_valid.to_numpy(dtype=float), cur_valid.to_numpy(dtype=float)
        labels, rs, cs = numeric_histogram(r, c, int(thresholds["bins"]))
        ks, p = ks_2samp(r, c) if len(r) and len(c) else (None, None)
        if pii:
            labels = [f"bin {i + 1}" for i in range(len(labels))]
    else:
        labels, rs, cs = categorical_histogram(ref_valid, cur_valid)
        ks = p = None
        if pii:
            labels = [lab if lab == "(other)" else mask(lab) for lab in labels]
    score = psi(rs, cs)
    drifted = score > thresholds["psi"] or (ks is not None and ks > thresholds["ks"])
    return FeatureDrift(
        feature=name,
        kind=kind,
        psi=score,
        ks=ks,
        ks_pvalue=p,
        psi_threshold=float(thresholds["psi"]),
        ks_threshold=float(thresholds["ks"]),
        drifted=drifted,
        reference_rows=len(ref),
        current_rows=len(cur),
        reference_null_rate=float(ref.isna().mean()) if len(ref) else 0.0,
        current_null_rate=float(cur.isna().mean()) if len(cur) else 0.0,
        pii=pii,
        histogram=Histogram([str(x) for x in labels], rs.tolist(), cs.tolist()),
    )


def thresholds_for(config: dict, feature: str) -> dict:
    base = {k: config.get(k, v) for k, v in DEFAULTS.items()}
    return {**base, **(config.get("features", {}).get(feature) or {})}


# -- entry point ------------------------------------------------------------------------------
def detect_drift(
    store,
    view: str,
    reference: tuple[datetime, datetime],
    current: tuple[datetime, datetime],
    features: list[str] | None = None,
    current_rows=None,
) -> DriftReport:
    """Compare the view's offline rows in ``current`` against ``reference`` (half-open windows).
    ``current_rows``: the current window's rows (``offline.read_window``) if the caller read them already."""
    fv = feature_view(store, view)
    suite = expectations.load_suite(store.repo_path, view)
    config = suite.drift if suite else {}
    sensitive = sensitive_features(fv)
    frames = {}
    for label, (start, end) in (("reference", reference), ("current", current)):
        given = current_rows if label == "current" else None
        table = offline.read_window(store, view, start, end) if given is None else given
        if table.num_rows == 0:
            raise OfflineStoreError(
                f"no rows of {view!r} in the {label} window [{start.isoformat()}, {end.isoformat()})",
                hint="choose a window with data (see `fs monitor freshness` for the newest event time)",
            )
        frames[label] = table.to_pandas()
    report = DriftReport(view, reference, current)
    for f in fv.features:
        if features and f.name not in features:
            continue
        vt = f.dtype.to_value_type()
        kind = "numeric" if vt in _NUMERIC else "categorical" if vt in _CATEGORICAL else None
        if kind is None:
            continue
        fd = feature_drift(
            f.name,
            kind,
            frames["reference"][f.name],
            frames["current"][f.name],
            thresholds_for(config, f.name),
            f.name in sensitive,
        )
        report.features.append(fd)
        metrics.DRIFT_SCORE.labels(view, f.name, "psi").set(fd.psi)
        if fd.ks is not None:
            metrics.DRIFT_SCORE.labels(view, f.name, "ks").set(fd.ks)
    return report
