"""A source's field_mapping, applied by one helper in each direction (issue #20.2)."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pytest

from fs_platform.errors import SchemaMismatchError
from fs_platform.field_mapping import mapped_name, source_column, to_mapped_names

CHAIN = SimpleNamespace(
    name="chained", field_mapping={"amount_usd": "amount", "amount": "amount_local", "ts": "event_ts"}
)


def test_both_directions_agree_on_a_chained_mapping():
    assert [source_column(CHAIN, n) for n in ("amount", "amount_local", "event_ts", "customer_id")] == [
        "amount_usd",
        "amount",
        "ts",
        "customer_id",
    ]
    assert [mapped_name(CHAIN, c) for c in ("amount_usd", "amount", "ts", "customer_id")] == [
        "amount",
        "amount_local",
        "event_ts",
        "customer_id",
    ]
    table = pa.table({"customer_id": [1], "amount_usd": [2.0], "amount": [20.0], "ts": [0]})
    out = to_mapped_names(table, CHAIN)
    assert out.column_names == ["customer_id", "amount", "amount_local", "event_ts"]
    assert out.to_pylist() == [{"customer_id": 1, "amount": 2.0, "amount_local": 20.0, "event_ts": 0}]
    assert to_mapped_names(out.select(["customer_id", "event_ts"]), CHAIN).column_names == [
        "customer_id",
        "event_ts",
    ]


def test_a_rename_onto_a_column_the_data_has_is_refused():
    source = SimpleNamespace(name="s", field_mapping={"cust_id": "customer_id"})
    with pytest.raises(SchemaMismatchError, match="renames columns onto customer_id"):
        to_mapped_names(pa.table({"cust_id": [1], "customer_id": [2]}), source)
