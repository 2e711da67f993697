"""#20.4: one rule for "is this field PII" (``fs_platform.metadata.is_sensitive_class``), and every reader of
the rule (masking, the catalog, the online read grant) agrees with it, for plain and on-demand views."""

from __future__ import annotations

from datetime import timedelta

import pytest
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64

from fs_platform.governance.catalog import _view_info
from fs_platform.governance.pii import pii_permissions
from fs_platform.metadata import (
    SENSITIVE_CLASSES,
    feature_meta,
    is_sensitive,
    is_sensitive_class,
    sensitive_features,
)

CLASSES = {"a_none": "none", "b_pseudo": "pseudonymous", "c_pii": "pii", "d_unclassified": None}


@pytest.mark.parametrize(
    ("cls", "sensitive"),
    [
        ("pii", True),
        ("pseudonymous", True),
        ("none", False),
        (None, False),
        ("", False),
        ("unclassified", False),
    ],
)
def test_the_rule(cls, sensitive):
    assert is_sensitive_class(cls) is sensitive
    assert set(SENSITIVE_CLASSES) == {"pii", "pseudonymous"}


def _view(name: str, cls: str | None) -> FeatureView:
    customer = Entity(name="customer", join_keys=["customer_id"])
    src = FileSource(name=f"{name}_src", path="unused.parquet", timestamp_field="ts")
    tags = {"pii": cls} if cls else {}
    return FeatureView(
        name=name,
        entities=[customer],
        ttl=timedelta(days=1),
        source=src,
        schema=[Field(name="x", dtype=Float64, tags=tags)],
    )


def test_masking_catalog_and_grants_ask_the_same_rule():
    views = [_view(name, cls) for name, cls in CLASSES.items()]
    expected = {name for name, cls in CLASSES.items() if is_sensitive_class(cls)}
    assert expected == {"b_pseudo", "c_pii"}

    masked = {v.name for v in views if sensitive_features(v)}
    cataloged = {v.name for v in views if _view_info(v, "batch").pii_features}
    granted = {name for p in pii_permissions(views) if p.name != "fs-online-read" for name in p.name_patterns}
    assert masked == cataloged == granted == expected


def test_a_feature_class_carried_in_view_tags_counts_too():
    """On-demand features carry their class in view tags (``feature.<name>.pii``): same rule."""
    view = _view("odfv_like", None)
    view.tags = {**(view.tags or {}), **feature_meta("x", "a value", "pseudonymous")}
    assert is_sensitive(view.features[0], view)
    assert _view_info(view, "on_demand").pii_features == ["x"] == sorted(sensitive_features(view))


def test_an_unknown_class_is_not_sensitive_anywhere():
    view = _view("odd", "PII ")  # not a class (policy at apply refuses it): no path treats it as sensitive
    assert not sensitive_features(view) and not _view_info(view, "batch").pii_features
    assert [p.name for p in pii_permissions([view])] == ["fs-online-read"]
