"""Which feature views and features a parity check covers, resolved from the Feast registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from feast import FeatureView
from feast.feature_view import DUMMY_ENTITY_FIELD
from feast.value_type import ValueType

from fs_platform.errors import RepoError
from fs_platform.metadata import entity_pii_class, freshness_sla, sensitive_features
from fs_platform.views import feature_views


@dataclass(frozen=True)
class Target:
    view: FeatureView
    features: tuple[str, ...]
    types: tuple[ValueType, ...]
    sensitive: frozenset[str]
    join_keys: tuple[str, ...]
    allowed_lag: timedelta
    masked_keys: frozenset[str] = frozenset()  # join keys of entities tagged pii: masked in reports

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def ttl(self) -> timedelta | None:
        ttl = self.view.ttl
        return ttl if ttl and ttl.total_seconds() > 0 else None


def pii_keys(store, view: FeatureView) -> frozenset[str]:
    """Join keys of the view's entities tagged ``pii: pii`` (direct identifiers, e.g. an e-mail
    address); pseudonymous ids stay readable, they are what on-call looks customers up by."""
    keys = set()
    for name in view.entities:
        try:
            entity = store.get_entity(name)
        except Exception:  # the dummy entity of an entityless view, or an unregistered one
            continue
        if entity_pii_class(entity) == "pii":
            keys.add(view.projection.join_key_map.get(entity.join_key, entity.join_key))
    return frozenset(keys)


def _target(store, view: FeatureView, features: list[str] | None, allowed_lag: timedelta | None) -> Target:
    fields = {f.name: f for f in view.features}
    names = list(features) if features else list(fields)
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise RepoError(f"feature view {view.name!r} has no feature(s) {', '.join(unknown)}")
    if (
        not view.entity_columns
    ):  # entity-less (Feast hides its dummy entity): one key, the dummy "" (spark_io)
        view = view.__copy__()
        view.entity_columns = [DUMMY_ENTITY_FIELD]
    # Default lag for the offline copy of stream writes: the view's freshness SLA.
    lag = allowed_lag if allowed_lag is not None else (freshness_sla(view) or timedelta(0))
    return Target(
        view=view,
        features=tuple(names),
        types=tuple(fields[n].dtype.to_value_type() for n in names),
        sensitive=frozenset(sensitive_features(view)),
        join_keys=tuple(c.name for c in view.entity_columns),
        allowed_lag=lag,
        masked_keys=pii_keys(store, view),
    )


def resolve(
    store,
    views: list[str] | None = None,
    feature_service: str | None = None,
    allowed_lag: timedelta | None = None,
) -> tuple[list[Target], dict[str, str]]:
    """Targets to check plus ``{name: reason}`` for requested things that cannot be checked."""
    if views and feature_service:
        raise RepoError("pass either views or a feature service, not both")
    registry_views = {v.name: v for v in feature_views(store)}
    skipped: dict[str, str] = {}
    if feature_service:
        try:
            service = store.get_feature_service(feature_service)
        except Exception as e:  # Feast raises FeatureServiceNotFoundException
            raise RepoError(
                f"unknown feature service {feature_service!r}",
                hint="list them with `feast feature-services list`",
            ) from e
        targets = []
        for proj in service.feature_view_projections:
            view = registry_views.get(proj.name)
            if view is None:
                skipped[proj.name] = "on-demand view: computed at request time, nothing stored to compare"
                continue
            targets.append(_target(store, view, [f.name for f in proj.features], allowed_lag))
        return [t for t in targets if t.view.online] or _none(feature_service), skipped
    names = (
        [v.name for v in feature_views(store, views)]
        if views
        else [n for n, v in registry_views.items() if v.online]
    )
    offline_only = [n for n in names if not registry_views[n].online]
    for n in offline_only:
        skipped[n] = "not an online view"
    targets = [_target(store, registry_views[n], None, allowed_lag) for n in names if n not in offline_only]
    return targets or _none("the registry"), skipped


def _none(where: str) -> list[Target]:
    raise RepoError(f"no online feature views to check in {where}", hint="run `fs apply` first")
