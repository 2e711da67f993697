"""Registered feature views by name: the one lookup, and the one error for a name that is not there.

    from fs_platform.views import feature_view, feature_views
    view = feature_view(store, "customer_profile")            # or Platform.feature_view(name)
    views = feature_views(store, ["a", "b"], online=True)     # every unknown name in one error

``store`` is the Feast ``FeatureStore`` (``Platform.store``). Batch and stream feature views only:
an on-demand view is computed at request time and has no stored rows, and the error says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from fs_platform.errors import ViewNotFoundError


def feature_view(store, name: str):
    """The registered feature view ``name``; ``ViewNotFoundError`` listing the known ones if absent."""
    return feature_views(store, [name])[0]


def feature_views(store, names: Iterable[str] | None = None, *, online: bool = False) -> list:
    """The registered views named ``names`` (in that order), or all of them when ``names`` is None.

    ``online=True`` considers only views served online (``online=True`` in the repo): an
    offline-only view is then reported as unknown, with the online views listed as known.
    """
    registered = {v.name: v for v in store.list_feature_views() if v.online or not online}
    if names is None:
        return list(registered.values())
    names = list(names)
    unknown = [n for n in dict.fromkeys(names) if n not in registered]
    if unknown:
        on_demand = {v.name for v in store.list_on_demand_feature_views()}
        raise view_not_found(unknown, registered, on_demand=on_demand, online=online)
    return [registered[n] for n in names]


def view_not_found(
    unknown: Iterable[str], known: Iterable[str], *, on_demand: Iterable[str] = (), online: bool = False
) -> ViewNotFoundError:
    """The error for names that are not registered views (one line: what, then what exists)."""
    unknown, known, on_demand = list(unknown), sorted(known), set(on_demand)
    kind = "online feature view" if online else "feature view"
    if len(unknown) == 1 and unknown[0] in on_demand:
        return ViewNotFoundError(
            f"{unknown[0]!r} is an on-demand feature view: "
            "it is computed at request time and has no stored rows"
        )
    what = (
        f"unknown {kind} {unknown[0]!r}"
        if len(unknown) == 1
        else f"unknown {kind}s {', '.join(map(repr, unknown))}"
    )
    hint = f"known: {', '.join(known)}" if known else f"no {kind}s are registered: run `fs apply` first"
    return ViewNotFoundError(what, hint=hint)
