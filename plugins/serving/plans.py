"""A compiled request shape of ``fs serve`` (``Plan``): built once per feature service or feature list
and ``full_feature_names``, reused by every request of that shape until the registry changes."""

from __future__ import annotations

from feast import FeatureStore

from fs_platform.governance.pii import GRANTS, sensitive_refs
from fs_platform.plugins.redis_store.fast_read import FastReader
from fs_platform.plugins.serving import metrics
from fs_platform.plugins.serving.settings import Caller


class Plan:
    """A compiled request shape: the reader, the metric label and the grants its PII features need."""

    def __init__(self, store: FeatureStore, features, full_feature_names: bool, label: str):
        self.reader = FastReader(store, features, full_feature_names)
        self.label = label
        self.entities = metrics.ENTITIES.labels(label)  # resolved once (labels() is a locked lookup)
        refs = sensitive_refs(store, _refs(features))
        self.needs = {ref: frozenset(GRANTS[cls]) for ref, cls in refs.items()}  # only sensitive ones

    def denied(self, caller: Caller) -> list[str]:
        return sorted(ref for ref, roles in self.needs.items() if not caller.roles & roles)


def _refs(features) -> list[str]:
    if isinstance(features, list):
        return features
    return [f"{p.name}:{f.name}" for p in features.feature_view_projections for f in p.features]
