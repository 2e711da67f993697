"""Who may read PII-classified features online (enforced by the feature server when it runs with
an auth config; the SDK guard is fs.governance.pii.get_online_features). Derived from the views
and services in features.py, so a newly classified feature is protected on the next `fs apply`.
See docs/governance.md."""

import features
from feast import FeatureService, FeatureView
from feast.on_demand_feature_view import OnDemandFeatureView

from fs_platform.governance.pii import pii_permissions

_objects = list(vars(features).values())
_views = [o for o in _objects if isinstance(o, (FeatureView, OnDemandFeatureView))]
_services = [o for o in _objects if isinstance(o, FeatureService)]

# Feast collects module-level Permission objects; one name per generated permission.
globals().update({p.name.replace("-", "_"): p for p in pii_permissions(_views, _services)})
