"""A project's registered definitions as ``RepoContents``, and their content hash.

The hash covers the definitions only (each object's spec, sorted by kind and name; the ``meta``
timestamps the registry stamps and pickled transformation bodies are left out, the transformation's
source text stays), so two registries holding the same definitions have
the same hash: a training set records it, and ``fs promote`` compares it across environments.
"""

from __future__ import annotations

import hashlib

from feast.feature_view import DUMMY_ENTITY_ID
from feast.repo_contents import RepoContents

from fs_platform.registry_diff import without_meta

KINDS = (
    "entities",
    "data_sources",
    "feature_views",
    "stream_feature_views",
    "on_demand_feature_views",
    "feature_services",
    "permissions",
)


def registered_contents(store) -> RepoContents:
    """Everything registered in ``store``'s project (fresh from the registry, not the cache)."""
    registry, project = store.registry, store.project
    registry.refresh(project)
    stream = registry.list_stream_feature_views(project)
    on_demand = registry.list_on_demand_feature_views(project)
    for view in on_demand:  # as parsed from a repo: Feast's planner re-infers the dummy key and would
        view.entity_columns = [
            c for c in view.entity_columns if c.name != DUMMY_ENTITY_ID
        ]  # count it as a feature
    stream_names = {v.name for v in stream}
    return RepoContents(
        projects=[p for p in registry.list_projects() if p.name == project],
        data_sources=registry.list_data_sources(project),
        feature_views=[v for v in registry.list_feature_views(project) if v.name not in stream_names],
        on_demand_feature_views=on_demand,
        stream_feature_views=stream,
        label_views=[],
        entities=registry.list_entities(project),  # with Feast's __dummy entity, as a parsed repo has it
        feature_services=registry.list_feature_services(project),
        permissions=registry.list_permissions(project),
    )


def registry_hash(contents: RepoContents) -> str:
    """sha256 of the definitions (module docstring); ``sha256:`` + 16 hex digits."""
    digest = hashlib.sha256()
    for kind in KINDS:
        for obj in sorted(getattr(contents, kind), key=lambda o: o.name):
            proto = obj.to_proto()
            body = proto.spec if proto.DESCRIPTOR.fields_by_name.get("spec") else proto
            digest.update(f"{kind}:{obj.name}:".encode())
            digest.update(_without_pickles(without_meta(body)).SerializeToString(deterministic=True))
    return "sha256:" + digest.hexdigest()[:16]


def _without_pickles(message):
    """An on-demand view's transformation is hashed by its source text: the dill-pickled function
    (``body``) differs from one process to the next for the same code."""
    for desc, value in message.ListFields():
        if desc.message_type is None or desc.message_type.GetOptions().map_entry:
            continue
        for item in value if desc.is_repeated else [value]:
            if desc.name == "user_defined_function" and item.body_text:
                item.ClearField("body")
            else:
                _without_pickles(item)
    return message
