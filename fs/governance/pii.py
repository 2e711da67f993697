"""PII: masking values in everything humans or machines read back, and the online read grant.

Classes come from each feature's ``pii`` tag (``fs/metadata.py``): ``none``, ``pseudonymous``,
``pii``. Sensitive = pseudonymous or pii.

Masking. A sensitive value is never printed, logged or used as a metric label; where a report
must still show *that* values differ (drift histograms, failing samples), it shows
``mask(value)``: a keyed hash token. The key is ``$FS_PII_MASK_KEY`` (stable tokens across runs,
keep it secret) or a random per-process key, so low-cardinality values (countries, e-mail
domains) cannot be recovered by hashing a dictionary.

Online read grant. Reading a sensitive feature online needs a role (non-sensitive features need
none from the SDK; the feature server asks for ``fs-online-reader`` or any PII role):

- ``fs-pii-reader`` for ``pii`` features (it also covers ``pseudonymous``),
- ``fs-pseudonymous-reader`` (or ``fs-pii-reader``) for ``pseudonymous`` features.

Two enforcement points share these rules: :func:`pii_permissions` builds the Feast
``Permission`` objects the feature server enforces (Feast checks whole views and feature
services, so a view or service exposing any sensitive feature needs the grant); and
:func:`get_online_features` / :func:`check_online_read` guard direct SDK use per feature.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable

from fs_platform.errors import OnlineAccessDenied
from fs_platform.metadata import SENSITIVE_CLASSES, is_sensitive_class, pii_class

ONLINE_READER = "fs-online-reader"
PII_READER = "fs-pii-reader"
PSEUDONYMOUS_READER = "fs-pseudonymous-reader"
SENSITIVE = SENSITIVE_CLASSES  # the classes needing a grant (fs.metadata.is_sensitive_class)
# Roles that grant each class; pii readers may read pseudonymous data too.
GRANTS = {"pii": (PII_READER,), "pseudonymous": (PII_READER, PSEUDONYMOUS_READER)}

_KEY = (os.environ.get("FS_PII_MASK_KEY") or secrets.token_hex(32)).encode()


def mask(value) -> str:
    """A stable token for a sensitive value: equal values give equal tokens, nothing more."""
    digest = hmac.new(_KEY, repr(value).encode(), hashlib.sha256).hexdigest()
    return f"masked:{digest[:10]}"


def mask_if(sensitive: bool, value):
    return mask(value) if sensitive and value is not None else value


def _classes(store) -> dict[str, dict[str, str]]:
    """``{view: {feature: class}}`` for every feature view in the registry."""
    return {
        v.name: {f.name: pii_class(f, v) for f in v.features}
        for v in store.list_all_feature_views(allow_cache=True)
    }


def sensitive_refs(store, refs: Iterable[str]) -> dict[str, str]:
    """``{"view:feature": class}`` for the sensitive ones among feature references.

    References may carry a version (``view@latest:feature``, ``view@v2:feature``) or name a
    whole view (``view``, ``view@v2``: every feature of it); results are keyed ``view:feature``.
    """
    classes = _classes(store)
    out: dict[str, str] = {}
    for ref in _expand(classes, refs):
        view, feature = ref.split(":", 1)
        cls = classes.get(view, {}).get(feature)
        if is_sensitive_class(cls):
            out[ref] = cls
    return out


def _expand(classes: dict[str, dict[str, str]], refs: Iterable[str]) -> list[str]:
    """``view:feature`` references, version stripped; a whole-view reference becomes all its features."""
    from fs_platform.feast_compat import parse_feature_or_view_ref

    out = []
    for ref in refs:
        view, _version, feature = parse_feature_or_view_ref(ref)
        if feature is None:
            out.extend(f"{view}:{f}" for f in classes.get(view, {}))
        else:
            out.append(f"{view}:{feature}")
    return out


def _refs(features) -> list[str]:
    """Feature references of a list of feature-reference strings or a ``FeatureService``."""
    if isinstance(features, str):
        return [features]
    if isinstance(features, (list, tuple)):
        return list(features)
    return [f"{p.name}:{f.name}" for p in features.feature_view_projections for f in p.features]


def check_online_read(store, features, roles: Iterable[str] = ()) -> None:
    """Raise ``OnlineAccessDenied`` unless ``roles`` grant every sensitive feature requested."""
    roles = set(roles)
    denied = {r: c for r, c in sensitive_refs(store, _refs(features)).items() if not roles & set(GRANTS[c])}
    if denied:
        from fs_platform.governance.metrics import PII_READS_DENIED

        PII_READS_DENIED.labels("sdk").inc()
        listed = ", ".join(f"{r} ({c})" for r, c in sorted(denied.items()))
        need = sorted({GRANTS[c][-1] for c in denied.values()})
        raise OnlineAccessDenied(
            f"reading {listed} online needs a PII grant (role {' or '.join(need)})",
            hint="request the role from the view owner (`fs catalog show VIEW`), or drop these features",
        )


def get_online_features(store, features, entity_rows, *, roles: Iterable[str] = (), **kwargs):
    """The SDK read with the PII guard: ``store.get_online_features`` after :func:`check_online_read`."""
    check_online_read(store, features, roles)
    return store.get_online_features(features=features, entity_rows=entity_rows, **kwargs)


def pii_permissions(views: Iterable, services: Iterable = ()) -> list:
    """Feast ``Permission`` objects for online reads, enforced by the feature server.

    Non-sensitive views and services: role ``fs-online-reader`` (or any PII role). Views and
    services exposing pseudonymous / pii features: the roles in ``GRANTS``. Put them in the feature
    repo (``feature_repo/permissions.py``) so ``fs apply`` registers them; they take effect on a
    feature server started with an auth config (``oidc`` or ``kubernetes``). Other actions are not
    covered here (Feast's ``AllowAll`` policy does not survive the registry round trip in 0.67).
    """
    from feast import FeatureService, FeatureView
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.permissions.action import AuthzedAction
    from feast.permissions.permission import Permission
    from feast.permissions.policy import RoleBasedPolicy

    readable = [FeatureView, OnDemandFeatureView, FeatureService]
    views = list(views)
    classes = {(v.name, f.name): pii_class(f, v) for v in views for f in v.features}
    exposed = {v.name: {classes[v.name, f.name] for f in v.features} for v in views}
    for s in services:
        exposed[s.name] = {
            classes.get((p.name, f.name)) for p in s.feature_view_projections for f in p.features
        }
    by_class: dict[str, list[str]] = {"pii": [], "pseudonymous": []}
    for name, found in sorted(exposed.items()):
        if "pii" in found:
            by_class["pii"].append(name)
        elif "pseudonymous" in found:
            by_class["pseudonymous"].append(name)
    guarded = by_class["pii"] + by_class["pseudonymous"]
    # Negative lookahead: the general read rule must not match guarded names, because Feast
    # grants a request if ANY matching permission allows it.
    others = "(?!(" + "|".join(map(re.escape, guarded)) + ")$).*" if guarded else ".*"
    perms = [
        Permission(
            name="fs-online-read",
            types=readable,
            name_patterns=[others],
            actions=[AuthzedAction.READ_ONLINE],
            policy=RoleBasedPolicy(roles=[ONLINE_READER, PSEUDONYMOUS_READER, PII_READER]),
        )
    ]
    for cls, names in by_class.items():
        if names:
            perms.append(
                Permission(
                    name=f"fs-online-read-{cls}",
                    types=readable,
                    name_patterns=[re.escape(n) for n in names],
                    actions=[AuthzedAction.READ_ONLINE],
                    policy=RoleBasedPolicy(roles=list(GRANTS[cls])),
                )
            )
    return perms
