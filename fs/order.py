"""Feature columns in the order they were requested: the one rule for every read API.

Feast 0.67 groups requested features per feature view, in set order (so not even stable between
processes), and appends on-demand features last. fs answers in requested order everywhere:
``get_online_features`` (``fs_platform.plugins.redis_store``), ``get_historical_features``
(``fs_platform.plugins.delta``), ``FastReader`` and ``fs serve``. Columns that are not requested
features (entity keys, the entity frame's own columns, the event timestamp) come first, in the order
they came.
"""

from __future__ import annotations

from collections.abc import Iterable


def requested_names(refs: Iterable[str], full_feature_names: bool) -> list[str]:
    """Output column names of feature references (``view:feature``), in the order requested."""
    from fs_platform.feast_compat import parse_feature_ref

    names = []
    for ref in refs:
        view, _, feature = parse_feature_ref(ref)
        names.append(f"{view}__{feature}" if full_feature_names else feature)
    return list(dict.fromkeys(names))


def in_order(columns: list[str], names: list[str]) -> list[str]:
    """``columns`` rearranged: those not in ``names`` first (as they came), then ``names`` order."""
    present = set(columns)
    wanted = [n for n in names if n in present]
    chosen = set(wanted)
    return [c for c in columns if c not in chosen] + wanted
