"""The platform's metadata convention on Feast objects, in one place.

Views carry ``owner`` and ``description`` natively and ``team``, ``tier`` and ``freshness_sla`` as
tags; every feature carries a ``description`` and a ``pii`` tag. Everything that reads
governance metadata (policy at apply, catalog, masking in reports) goes through here.
"""

from __future__ import annotations

import re
from datetime import timedelta

PII_CLASSES = ("none", "pseudonymous", "pii")
VIEW_TAGS = ("team", "tier", "freshness_sla")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``15m``, ``36h``, ``7d`` ... -> timedelta; ValueError otherwise."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 15m, 36h, 7d)")
    return timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})


def pii_class(field) -> str:
    return (field.tags or {}).get("pii", "")


def is_sensitive(field) -> bool:
    """True for features whose values must never appear in clear in logs, metrics or reports."""
    return pii_class(field) in ("pii", "pseudonymous")


def sensitive_features(view) -> set[str]:
    return {f.name for f in view.features if is_sensitive(f)}


def freshness_sla(view) -> timedelta | None:
    raw = (view.tags or {}).get("freshness_sla")
    return parse_duration(raw) if raw else None
