"""A compiled ``get_online_features`` request shape: the views' reads, output names and types, and the
assembly of a ``ColumnarOnlineResponse`` from their results."""

from __future__ import annotations

from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL
from feast.online_response import OnlineResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from fs_platform.feast_compat import request_context
from fs_platform.order import requested_names
from fs_platform.plugins.redis_store.reader import ViewRead, ViewResult
from fs_platform.plugins.redis_store.response import ColumnarOnlineResponse, entity_meta, in_requested_order
from fs_platform.plugins.redis_store.state import StoreState, view_read


class ReadPlan:
    """A compiled ``get_online_features`` request shape (features + full_feature_names)."""

    def __init__(
        self,
        state: StoreState,
        grouped_refs,
        entity_name_to_join_key_map,
        entity_type_map,
        join_keys_set,
        full_feature_names: bool,
    ):
        self.reads: list[ViewRead] = []
        self.names: list[list[str]] = []
        self.order: list[str] = []  # output feature names in requested order (set by the store)
        self.feature_types: dict[str, ValueType] = {}
        for view, features in grouped_refs:
            read = view_read(
                state.layout,
                view,
                state.codec(view),
                features,
                view.projection.join_key_map,
                ttl=state.cfg.enforce_view_ttl,
            )
            self.reads.append(read)
            prefix = view.projection.name_to_use() + "__"
            names = [prefix + f if full_feature_names else f for f in features]
            self.names.append(names)
            for f, name, vt in zip(features, names, read.types, strict=True):
                self.feature_types[f] = self.feature_types[prefix + f] = vt
                self.feature_types[name] = vt
        self.join_keys_set = join_keys_set
        # Entity-less views are keyed by Feast's dummy entity, whose value the read supplies.
        self.dummy = any(DUMMY_ENTITY_ID in r.request_columns for r in self.reads)
        self.entity_name_to_join_key_map = entity_name_to_join_key_map
        self.entity_type_map = entity_type_map

    def entity_columns(self, entity_rows) -> tuple[dict[str, list], int] | None:
        """Column-wise entity rows keyed by join key; None if values are protos (Feast's path)."""
        if isinstance(entity_rows, list):
            if not entity_rows:
                return {}, 0
            keys = list(entity_rows[0])
            cols = {k: [row[k] for row in entity_rows] for k in keys}
        else:
            cols = {
                k: v if isinstance(v, list) else list(v if not hasattr(v, "val") else v.val)
                for k, v in entity_rows.items()
            }
        out: dict[str, list] = {}
        n = None
        if self.dummy:  # entity-less views: every row counts, whatever columns it has
            if isinstance(entity_rows, list):
                n = len(entity_rows)
            elif cols:
                n = len(next(iter(cols.values())))
        for k, values in cols.items():
            jk = k if k in self.join_keys_set else self.entity_name_to_join_key_map.get(k)
            if jk is None:
                continue
            if values and isinstance(values[0], ValueProto):
                return None
            if n is not None and len(values) != n:
                raise ValueError("All entity rows must have the same number of values.")
            n = len(values)
            out[jk] = values
        if self.dummy:
            out[DUMMY_ENTITY_ID] = [DUMMY_ENTITY_VAL] * (n or 0)
        return out, n or 0

    def response(self, columns: dict[str, list], n: int, results: list[ViewResult]) -> ColumnarOnlineResponse:
        out: dict[str, list] = {}
        meta: dict[str, tuple] = {}
        for jk, values in columns.items():
            if jk == DUMMY_ENTITY_ID:
                continue  # not a column of the answer (as in Feast's)
            vt = self.entity_type_map.get(jk, ValueType.UNKNOWN)
            out[jk] = [int(v) for v in values] if vt in (ValueType.INT64, ValueType.INT32) else list(values)
            meta[jk] = entity_meta(vt, n)
        for read, names, result in zip(self.reads, self.names, results, strict=True):
            for name, vt, values in zip(names, read.types, result.values, strict=True):
                out[name] = values
                meta[name] = (vt, result.statuses, result.event_us)
        return in_requested_order(ColumnarOnlineResponse(out, meta, self.feature_types), self.order)


def plan_for(state: StoreState, registry, project, features, full_feature_names) -> ReadPlan | None:
    """The request shape's plan, compiled once per Feast request context; None: Feast's generic path."""
    ctx = request_context(registry, project, features, full_feature_names)
    hit = state.plans.get(id(ctx))
    if hit is not None and hit[0] is ctx:
        return hit[1]
    (refs, odfvs, name_to_jk, type_map, join_keys_set, grouped_refs, _, _, entityless) = ctx
    plan = None
    # ODFVs and versioned reads keep Feast's generic path (entity-less views: ReadPlan adds the dummy key).
    if not odfvs and all(v.projection.version_tag is None for v, _ in grouped_refs):
        plan = ReadPlan(state, grouped_refs, name_to_jk, type_map, join_keys_set, full_feature_names)
        plan.order = requested_names(refs, full_feature_names)
    if len(state.plans) > 256:
        state.plans.clear()
    state.plans[id(ctx)] = (ctx, plan)
    return plan


def requested_order(registry, project, features, full_feature_names, response) -> OnlineResponse:
    """Feast's generic path answers per view, in set order: put features in requested order."""
    refs = request_context(registry, project, features, full_feature_names)[0]
    return in_requested_order(response, requested_names(refs, full_feature_names))
