"""#14.4: online results come back in requested feature order, through every read API (Feast's API on
its fast and generic paths, FastReader; fs serve: tests/plugins/serving/test_contract.py). Stock Feast
groups features per view, in set order, with on-demand features last."""

from __future__ import annotations

import pytest

from fs_platform.plugins.redis_store.fast_read import FastReader

pytestmark = pytest.mark.redis

ROWS = {"customer_id": [1, 2, 99], "merchant_id": ["a", "b", "c"], "pay": [3.0, 1.0, 2.0]}
PLAIN = ["txn:tags", "profile:count", "txn:seen_at", "pair:amount", "txn:level", "txn:country", "txn:ratio"]
WITH_ODFV = ["txn:flag", "pay_vs_amount:pay_ratio", "profile:country", "txn:amount", "txn:ratio"]


def _names(refs: list[str], full: bool) -> list[str]:
    return [r.replace(":", "__") if full else r.split(":")[1] for r in refs]


@pytest.fixture
def materialized(tmp_path):
    from tests.plugins.redis_store.conftest import MACHINE_URL, Repo

    r = Repo(tmp_path, {"url": MACHINE_URL})
    r.materialize()
    yield r
    r.close()


@pytest.mark.parametrize("features", [PLAIN, WITH_ODFV], ids=["fast_path", "generic_path_with_odfv"])
@pytest.mark.parametrize("full", [False, True])
def test_feast_api_and_fast_reader_answer_in_requested_order(materialized, features, full):
    store = materialized.store
    keys = ["customer_id", "merchant_id"] if "pair:amount" in features else ["customer_id"]
    rows = {k: v for k, v in ROWS.items() if k in keys or k == "pay"}
    for _ in range(2):
        got = store.get_online_features(features, rows, full_feature_names=full)
        assert list(got.to_dict()) == [*keys, *_names(features, full)]
        assert list(got.to_df().columns) == [*keys, *_names(features, full)]
        assert list(got.proto.metadata.feature_names.val) == [*keys, *_names(features, full)]
    reader = FastReader(store, features, full_feature_names=full)
    assert list(reader.read(rows)) == _names(features, full)
    by_name = got.to_dict()
    assert reader.read(rows) == {n: by_name[n] for n in _names(features, full)}
