"""On-demand feature views on the fast read path, computed with Feast's own transformation code.

The inputs are what Feast hands the transformation in ``get_online_features``: the join keys, the
request data and the features read from the view's declared sources (Feast drops features of other
views so a UDF cannot read them by accident). Outputs go through Feast's value conversion, so a
float null comes back NaN as it does from Feast.
"""

from __future__ import annotations

import pyarrow as pa
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values


class OnDemand:
    def __init__(self, odfv, grouped_refs, plan_names, join_keys, request_data, full_feature_names: bool):
        self.odfv = odfv
        self.name = odfv.projection.name_to_use()
        self.full_feature_names = full_feature_names
        sources = {p.name for p in odfv.source_feature_view_projections.values()}
        picked = [(i, view) for i, (view, _) in enumerate(grouped_refs) if view.projection.name in sources]
        self.source_views = [view.name for _, view in picked]
        self.inputs = [(i, j, plan_names[i][j]) for i, _ in picked for j in range(len(plan_names[i]))]
        own_request = {f.name for rs in odfv.source_request_sources.values() for f in rs.schema}
        self.request_fields = sorted(own_request & set(request_data))
        self.join_keys = sorted(join_keys)
        self.types = {f.name: f.dtype.to_value_type() for f in odfv.features}
        self.wanted: dict[str, str] = {}  # output column -> feature

    def output(self, feature: str):
        """(output name, value type) of a requested feature of this view."""
        name = f"{self.name}__{feature}" if self.full_feature_names else feature
        self.wanted[name] = feature
        return name, self.types[feature]

    def compute(self, columns: dict[str, list], request_data: dict[str, list], results) -> dict[str, list]:
        """``{output name: python values}`` for the requested features of this view."""
        inputs: dict[str, list] = {jk: columns[jk] for jk in self.join_keys if jk in columns}
        inputs.update({f: request_data[f] for f in self.request_fields})
        for i, j, name in self.inputs:
            inputs[name] = results[i].values[j]
        if self.odfv.mode == "python":
            out = self.odfv.transform_dict(inputs)
            cols = {name: (v if isinstance(v, list) else [v]) for name, v in out.items()}
        else:
            table = self.odfv.transform_arrow(pa.Table.from_pydict(inputs), self.full_feature_names)
            cols = {name: table[name].to_numpy() for name in self.wanted}
        return {
            name: [
                feast_value_type_to_python_type(p)
                for p in python_values_to_proto_values(cols[name], self.types[feature])
            ]
            for name, feature in self.wanted.items()
        }
