"""The platform's metadata convention on Feast objects, in one place.

Views carry ``owner`` and ``description`` natively and ``team``, ``tier`` and ``freshness_sla`` as
tags; every feature carries a ``description`` and a ``pii`` tag. Everything that reads
governance metadata (policy at apply, catalog, masking in reports) goes through here.
"""

from __future__ import annotations

import re
from datetime import timedelta

PII_CLASSES = ("none", "pseudonymous", "pii")
SENSITIVE_CLASSES = ("pseudonymous", "pii")
"""PII classes whose values must never appear in clear (see :func:`is_sensitive_class`)."""
VIEW_TAGS = ("team", "tier", "freshness_sla")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, what: str | None = None, *, positive: bool = False) -> timedelta:
    """``15m``, ``36h``, ``7d`` ... -> timedelta; ``InvalidArgument`` (a ValueError) otherwise, naming
    ``what`` (the parameter or option) if given. ``positive`` also refuses ``0h``."""
    from fs_platform.errors import InvalidArgument

    m = _DURATION.match(text or "")
    value = timedelta(**{_UNIT[m.group(2)]: int(m.group(1))}) if m else None
    if value is None or (positive and not value):
        kind = "a positive duration" if positive else "a duration"
        where = f"{what}: " if what else ""
        raise InvalidArgument(f"{where}not {kind}: {text!r} (use e.g. 15m, 36h, 7d)")
    return value


def feature_tag_key(feature: str, key: str) -> str:
    """View-level tag carrying a feature's metadata, for views whose fields cannot carry it.

    Feast 0.67 compares an on-demand view's declared fields to the fields it infers by running the
    UDF, description and tags included, so on-demand features must be declared bare; their
    description and PII class live in the view's tags under ``feature.<name>.<key>``.
    """
    return f"feature.{feature}.{key}"


def feature_meta(feature: str, description: str, pii: str) -> dict[str, str]:
    """The view tags that describe one on-demand feature (see ``feature_tag_key``)."""
    return {feature_tag_key(feature, "description"): description, feature_tag_key(feature, "pii"): pii}


def _meta(field, view, key: str, own: str | None) -> str:
    if own:
        return own
    return ((view.tags or {}) if view is not None else {}).get(feature_tag_key(field.name, key), "")


def pii_class(field, view=None) -> str:
    return _meta(field, view, "pii", (field.tags or {}).get("pii"))


def field_description(field, view=None) -> str:
    return _meta(field, view, "description", field.description)


def entity_pii_class(entity) -> str | None:
    """An entity's ``pii`` tag: ``pii`` marks join keys that are direct identifiers."""
    return (entity.tags or {}).get("pii")


def is_sensitive_class(pii: str | None) -> bool:
    """THE rule for "is this PII": a class (a feature's or entity's ``pii`` tag) is sensitive if it is
    ``pseudonymous`` or ``pii``. Masking, catalog pages, the online read grant and parity all ask here."""
    return pii in SENSITIVE_CLASSES


def is_sensitive(field, view=None) -> bool:
    """True for features whose values must never appear in clear in logs, metrics or reports."""
    return is_sensitive_class(pii_class(field, view))


def sensitive_features(view) -> set[str]:
    return {f.name for f in view.features if is_sensitive(f, view)}


def freshness_sla(view) -> timedelta | None:
    raw = (view.tags or {}).get("freshness_sla")
    return parse_duration(raw) if raw else None
