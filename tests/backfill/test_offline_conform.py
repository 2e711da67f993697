"""Conforming recomputed rows to the Delta table's schema: errors name columns and types only."""

import pyarrow as pa
import pytest

from backfill.offline import conform
from fs.errors import SchemaMismatchError


def test_a_cast_error_names_column_and_types_but_never_the_value():
    data = pa.table({"customer_id": pa.array([1, 2]), "email_hash": pa.array(["ok", "jane.doe@example.com"])})
    schema = pa.schema([("customer_id", pa.int64()), ("email_hash", pa.int64())])
    with pytest.raises(SchemaMismatchError) as err:
        conform(data, schema, "customer_profile")
    message = str(err.value)
    assert "'email_hash'" in message and "string" in message and "int64" in message
    assert "jane.doe" not in message and "ok" not in message.split("'customer_profile'")[1].replace(
        "int64", ""
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__
