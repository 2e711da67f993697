"""fs serve speaks Feast's /get-online-features: the same JSON as Feast's response for the same
request (values, statuses, event times), features in requested order, on-demand views computed with
the request data as Feast computes them."""

from __future__ import annotations

import pytest
from feast.feature_server_utils import convert_response_to_dict

from tests.plugins.serving.asgi import request
from tests.plugins.serving.conftest import make_app

pytestmark = pytest.mark.redis

ROWS = {"customer_id": [1, 2, 7, 999], "merchant_id": ["a", "b", "c", "d"], "pay": [3.0, None, 1.5, 2.0]}


def _by_name(body: dict) -> dict:
    return dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))


def _feast(store, features, rows, full: bool) -> dict:
    return _by_name(
        convert_response_to_dict(store.get_online_features(features, rows, full_feature_names=full).proto)
    )


@pytest.mark.parametrize(
    "features, full",
    [
        (
            [
                "txn:amount",
                "txn:count",
                "txn:country",
                "txn:ratio",
                "txn:flag",
                "txn:level",
                "txn:tags",
                "txn:seen_at",
                "pay_vs_amount:pay_ratio",
            ],
            False,
        ),
        (["profile:country", "txn:amount", "pair:amount", "txn:country", "pay_vs_amount:pay_ratio"], True),
    ],
)
def test_response_equals_feasts_for_every_value_type(repo, features, full):
    app = make_app(repo.store)
    status, headers, body = request(
        app,
        "POST",
        "/get-online-features",
        {"features": features, "entities": ROWS, "full_feature_names": full},
    )
    assert status == 200, body
    assert _by_name(body) == _feast(repo.store, features, ROWS, full)
    assert "x-fs-degraded" not in headers


def test_feature_service_and_requested_order(repo):
    app = make_app(repo.store)
    features = ["txn:tags", "profile:count", "txn:amount", "pay_vs_amount:pay_ratio", "txn:flag"]
    for _ in range(3):
        _, _, body = request(
            app,
            "POST",
            "/get-online-features",
            {"features": features, "entities": ROWS, "full_feature_names": True},
        )
        assert body["metadata"]["feature_names"] == [
            "customer_id",
            "merchant_id",
            "txn__tags",
            "profile__count",
            "txn__amount",
            "pay_vs_amount__pay_ratio",
            "txn__flag",
        ]
    status, _, body = request(
        app, "POST", "/get-online-features", {"feature_service": "scoring", "entities": ROWS}
    )
    assert status == 200, body
    service = repo.store.get_feature_service("scoring")
    assert _by_name(body) == _feast(repo.store, service, ROWS, False)
    assert body["metadata"]["feature_names"] == [
        "customer_id",
        "merchant_id",
        "amount",
        "tags",
        "count",
        "pay_ratio",
    ]


def test_aggregation_view_and_on_demand_view_over_it(agg_repo):
    app = make_app(agg_repo.store)
    features = ["agg:n_10m", "agg:n_1h", "agg:amount_sum_1h", "agg:amount_mean_1h", "vs_mean:vs_mean"]
    rows = {"customer_id": [1, 2, 3], "amount": [30.0, 15.0, 1.0]}
    status, _, body = request(app, "POST", "/get-online-features", {"features": features, "entities": rows})
    assert status == 200, body
    got = _by_name(body)
    want = _feast(agg_repo.store, features, rows, False)
    for name in want:  # aggregation event times are the request time: compare values and statuses
        assert (got[name]["values"], got[name]["statuses"]) == (
            want[name]["values"],
            want[name]["statuses"],
        ), name
    assert got["n_10m"]["values"] == [2, 1, 0] and got["n_1h"]["values"] == [3, 1, 0]
    assert got["vs_mean"]["values"][:2] == [pytest.approx(30 / 15), pytest.approx(15 / 7.5)]
