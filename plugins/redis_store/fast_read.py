"""Hot-caller read API: the same store and semantics, without Feast's per-request machinery.

    reader = FastReader(FeatureStore("feature_repo"), ["customer_txn_aggregates:txn_count_1h", ...])
    reader.read({"customer_id": [42, 43]})        # {"txn_count_1h": [3, None], ...}
    reader.read_arrow({"customer_id": [42, 43]})  # pyarrow.Table
    served = await reader.serve_async({"customer_id": [42], "amount": [12.5]})  # statuses, event times

Feature resolution (views, projections, join keys, on-demand views) happens once in the constructor;
a read is key building + one MGET + one ``json.loads`` + a transpose. No protobuf on the hot path.
Rows not found or older than the view's ttl come back as None. Features come back in the order they
were requested (a feature service: its projections' order). On-demand feature views are computed from
the request data and the features read, with Feast's own transformation code, so their values are
Feast's. Call ``refresh()`` after ``feast apply`` (``fs serve`` does it when the registry changes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from feast import FeatureService, FeatureStore
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL
from feast.value_type import ValueType

from fs_platform.entity_keys import error as entity_key_error
from fs_platform.entity_keys import exact
from fs_platform.errors import ConfigError, InvalidArgument, OnlineStoreError
from fs_platform.feast_compat import online_store, parse_feature_ref, request_context
from fs_platform.plugins.redis_store.on_demand import OnDemand
from fs_platform.plugins.redis_store.online_store import RedisOnlineStore
from fs_platform.plugins.redis_store.read_plan import ReadPlan
from fs_platform.plugins.redis_store.reader import build_keys

_INT_KEYS = (ValueType.INT32, ValueType.INT64)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass
class Request:
    """A validated read: entity columns by join key, request data, and the keys to fetch."""

    columns: dict[str, list]
    n: int
    request_data: dict[str, list]
    keys: list[str]


@dataclass
class Served:
    """One read's output columns (join keys first, then features in requested order)."""

    names: list[str]
    values: list[list]
    types: list[ValueType]
    statuses: list[list[int] | None]  # None: every row PRESENT (entity and on-demand columns)
    event_us: list[list[int] | None]  # None: no event time (entity and on-demand columns)
    failed: dict[str, str] = field(default_factory=dict)  # view -> why its features are INVALID


class FastReader:
    def __init__(
        self, store: FeatureStore, features: list[str] | FeatureService, full_feature_names: bool = False
    ):
        online = online_store(store)
        if not isinstance(online, RedisOnlineStore):
            raise ConfigError(
                f"FastReader needs the fs Redis online store, the repo uses {type(online).__name__}"
            )
        self._store = store
        self._online = online
        self._features = features
        self._full_feature_names = full_feature_names
        self.refresh()

    def refresh(self) -> None:
        """Re-resolve the features against the registry (after an apply)."""
        store = self._store
        ctx = request_context(store.registry, store.project, self._features, self._full_feature_names)
        (refs, odfvs, name_to_jk, type_map, join_keys_set, grouped_refs, _, request_data, entityless) = ctx
        if any(v.projection.version_tag is not None for v, _ in grouped_refs):
            raise ConfigError("FastReader and fs serve do not serve versioned feature references")
        self._state = self._online.state(store.config)
        plan = ReadPlan(
            self._state, grouped_refs, name_to_jk, type_map, join_keys_set, self._full_feature_names
        )
        self._plan = plan
        # Request columns the reads need (a projection's join_key_map may rename a join key).
        self._join_keys = sorted({c for r in plan.reads for c in r.request_columns})
        # Entity-less views are keyed by Feast's dummy entity: the reader supplies its value itself.
        self._dummy = DUMMY_ENTITY_ID in self._join_keys
        self._key_types = type_map
        # Feast answers with every join key of the project found in the request (request data and
        # unknown columns are dropped): the same columns here.
        self._echo = {
            *name_to_jk.values(),
            *(k for k in join_keys_set if isinstance(k, str)),
            *self._join_keys,
        }
        self._echo.discard(DUMMY_ENTITY_ID)
        self._request_fields = sorted(request_data)
        position = {
            (view.projection.name_to_use(), f): (i, j)
            for i, (view, features) in enumerate(grouped_refs)
            for j, f in enumerate(features)
        }
        on_demand = {o.projection.name_to_use(): o for o in odfvs}
        self._on_demand = [
            OnDemand(o, grouped_refs, plan.names, self._join_keys, request_data, self._full_feature_names)
            for o in odfvs
        ]
        # Output columns in requested order: ("read", i, j) or ("odfv", k, name).
        outputs, names, types = [], [], []
        for ref in refs:
            view_name, _, feature = parse_feature_ref(ref)
            hit = position.get((view_name, feature))
            if hit is not None:
                i, j = hit
                outputs.append(("read", i, j))
                names.append(plan.names[i][j])
                types.append(plan.reads[i].types[j])
            else:
                k = list(on_demand).index(view_name)
                name, vt = self._on_demand[k].output(feature)
                outputs.append(("odfv", k, name))
                names.append(name)
                types.append(vt)
        self._outputs = outputs
        self.names = names  # feature output names, requested order
        self.types = types

    # --- the read, in three steps (the server puts its deadline and breaker around fetch) -------
    def prepare(self, entities: Mapping[str, Sequence]) -> Request:
        """Validate entity columns (join keys and request data) and build the keys; no I/O.
        Bad input raises ``InvalidArgument`` (one line naming the column)."""
        columns: dict[str, list] = {}
        n = None
        for name, values in entities.items():
            if not isinstance(values, list | tuple):
                raise InvalidArgument(f"entities[{name!r}] must be a list of values")
            if n is not None and len(values) != n:
                raise InvalidArgument("every entities column must have the same number of values")
            n = len(values)
            columns[name] = list(values)
        n = n or 0
        if self._dummy:
            columns[DUMMY_ENTITY_ID] = [DUMMY_ENTITY_VAL] * n
        for jk in self._join_keys:
            if jk not in columns:
                raise InvalidArgument(f"entities lack join key {jk!r}")
            kind = self._key_types.get(jk)
            if kind in _INT_KEYS and not all(
                type(v) is int and _INT64_MIN <= v <= _INT64_MAX for v in columns[jk]
            ):
                columns[jk] = _exact_column(columns[jk], kind, jk)  # 2.0, "2" -> 2 (fs.entity_keys)
        missing = [f for f in self._request_fields if f not in columns]
        if missing:
            raise InvalidArgument(f"entities lack request data {', '.join(missing)} (on-demand features)")
        keys = build_keys(self._state.layout, self._plan.reads, columns)
        request_data = {f: columns[f] for f in self._request_fields}
        return Request({c: v for c, v in columns.items() if c in self._echo}, n, request_data, keys)

    async def fetch(self, request: Request, deadline: float | None = None) -> list:
        """The one Redis read; ``deadline`` (loop time): the builtin ``TimeoutError`` past it."""
        return await self._state.mget_async(request.keys, deadline)

    def fetch_direct(self, request: Request, timeout: float) -> list | None:
        """The read answered in the calling thread, or None if it cannot be (``StoreState.mget_direct``):
        then ``fetch``."""
        return self._state.mget_direct(request.keys, timeout)

    def fetch_sync(self, request: Request) -> list:
        return self._state.mget(request.keys)

    def assemble(
        self, request: Request, replies: list | None, now_us: int | None = None, why: str = "read failed"
    ) -> Served:
        """Decode the replies: a view that fails (``replies`` None: the fetch failed, for reason
        ``why``) gives its features status INVALID, the others are served."""
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        n, state, failed = request.n, self._state, {}
        reads = self._plan.reads
        results = None
        if replies is None:
            failed = dict.fromkeys([read.view_name for read in reads], why)
        else:
            try:  # every view in one pass (one JSON parse); on a failure, again view by view
                results = state.results(reads, replies, n, now_us)
            except Exception:
                results = None
        if results is None:
            results = []
            for i, read in enumerate(reads):
                if replies is None:
                    results.append(None)
                    continue
                try:
                    results.append(state.results([read], replies[i * n : (i + 1) * n], n, now_us)[0])
                except Exception as e:  # a corrupt row must not fail the other views
                    failed[read.view_name] = f"decode failed: {type(e).__name__}"
                    results.append(None)
        invalid, none_values = [0] * n, [None] * n
        names, values, types, statuses, event_us = [], [], [], [], []
        for jk, column in request.columns.items():
            names.append(jk)
            values.append(column)
            types.append(self._key_types.get(jk, ValueType.UNKNOWN))
            statuses.append(None)
            event_us.append(None)
        odfv_out = self._compute_on_demand(request, results, failed) if self._on_demand else []
        for (kind, a, b), name, vt in zip(self._outputs, self.names, self.types, strict=True):
            names.append(name)
            types.append(vt)
            if kind == "read":
                r = results[a]
                values.append(none_values if r is None else r.values[b])
                statuses.append(invalid if r is None else r.statuses)
                event_us.append(None if r is None else r.event_us)
            else:
                col = odfv_out[a]
                values.append(none_values if col is None else col[b])
                statuses.append(invalid if col is None else None)
                event_us.append(None)
        return Served(names, values, types, statuses, event_us, failed)

    def _compute_on_demand(self, request: Request, results, failed: dict[str, str]) -> list:
        out = []
        for od in self._on_demand:
            broken = [v for v in od.source_views if failed.get(v)]
            if broken:
                failed[od.name] = f"source view {broken[0]} failed"
                out.append(None)
                continue
            try:
                out.append(od.compute(request.columns, request.request_data, results))
            except Exception as e:  # a failing UDF fails its own features only
                failed[od.name] = f"transformation failed: {type(e).__name__}"
                out.append(None)
        return out

    # --- convenience: the whole read ------------------------------------------------------------
    def serve(self, entities: Mapping[str, Sequence], now_us: int | None = None) -> Served:
        request = self.prepare(entities)
        return self.assemble(request, self.fetch_sync(request), now_us)

    async def serve_async(self, entities: Mapping[str, Sequence], now_us: int | None = None) -> Served:
        request = self.prepare(entities)
        return self.assemble(request, await self.fetch(request), now_us)

    def read(self, entities: Mapping[str, Sequence]) -> dict[str, list]:
        """Feature values per output name (requested order), one per entity row; a view that
        cannot be decoded raises (``serve`` reports it per feature instead)."""
        return self._checked(self.serve(entities))

    async def read_async(self, entities: Mapping[str, Sequence]) -> dict[str, list]:
        return self._checked(await self.serve_async(entities))

    def read_arrow(self, entities: Mapping[str, Sequence]) -> pa.Table:
        return pa.table(self.read(entities))

    def _checked(self, served: Served) -> dict[str, list]:
        if served.failed:
            view, why = next(iter(served.failed.items()))
            raise OnlineStoreError(f"reading feature view {view!r} failed: {why}")
        skip = len(served.names) - len(self.names)
        return dict(zip(served.names[skip:], served.values[skip:], strict=True))


def _exact_column(values: list, kind: ValueType, key: str) -> list:
    """Entity key values as exact keys of ``kind``, or one ``EntityKeyTypeError`` (an
    ``InvalidArgument``: 400 in fs serve) counting those that are not, never quoting them."""
    out, bad = [], 0
    for v in values:
        try:
            out.append(exact(v, ValueType.INT64 if kind in _INT_KEYS else kind))
        except TypeError:
            bad += 1
    if bad:
        raise entity_key_error(key, kind, bad, "entities")
    return out
