"""Window aggregation features defined once (docs/aggregations.md).

from fs_platform.aggregation import Aggregation, aggregation_view, col
"""

from fs_platform.aggregation.expr import Expr, col, lit
from fs_platform.aggregation.spec import Aggregation, AggregationSpec, is_aggregation, spec_of
from fs_platform.aggregation.view import aggregation_view

__all__ = [
    "Aggregation",
    "AggregationSpec",
    "Expr",
    "aggregation_view",
    "col",
    "is_aggregation",
    "lit",
    "spec_of",
]
