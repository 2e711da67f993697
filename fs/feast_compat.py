"""Every use of Feast's private API (names with a leading underscore), in one place.

fs relies on a handful of Feast 0.67 internals that have no public equivalent. A Feast upgrade that
renames or reshapes one of them breaks this file only; its tests (the whole suite) say which.
"""

from __future__ import annotations

from feast import utils as _utils
from feast.feature_server_utils import _value_to_native


def provider(store):
    """The store's provider (Feast exposes it only through a private accessor)."""
    return store._get_provider()


def online_store(store):
    """The provider's online store object (fs's ``RedisOnlineStore`` when configured)."""
    return store._get_provider().online_store


def request_context(registry, project: str, features, full_feature_names: bool) -> tuple:
    """Feast's cached resolution of feature refs or a feature service, the 9-tuple
    ``(refs, odfvs, name_to_jk, type_map, join_keys_set, grouped_refs, _, request_data, entityless)``."""
    return _utils._get_cached_request_context(registry, project, features, full_feature_names)


def parse_feature_ref(ref: str) -> tuple[str, int | None, str]:
    """``"view:feature"`` or ``"view@v2:feature"`` -> ``(view, version, feature)``."""
    return _utils._parse_feature_ref(ref)


def parse_feature_or_view_ref(ref: str) -> tuple[str, int | None, str]:
    return _utils._parse_feature_or_view_ref(ref)


def column_names(view, entities) -> tuple[list[str], list[str], str, str | None]:
    """``(join_keys, features, timestamp_field, created_column)`` of a view's batch source, as
    Feast's materialization names them."""
    return _utils._get_column_names(view, entities)


def requested_views_to_features(feature_refs, feature_views, odfvs) -> tuple:
    return _utils._get_requested_feature_views_to_features_dict(feature_refs, feature_views, odfvs)


def value_to_native(value):
    """A Feast ``Value`` proto as the Python value Feast's feature server puts in its JSON."""
    return _value_to_native(value)


def take_opened(store) -> tuple:
    """``(provider, registry)`` of a ``FeatureStore`` as far as Feast has created them (it does so
    lazily; ``None`` otherwise), and forget them: the store creates new ones if used again. For
    closing their clients (Feast 0.67 has no synchronous ``close``)."""
    provider, registry = store._provider, store._registry
    store._provider = store._registry = None
    return provider, registry
