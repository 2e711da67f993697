"""An ``OnlineResponse`` that holds Python columns and builds Feast's protobuf only on demand.

``to_dict()`` (and so ``to_df``/``to_arrow``) returns the columns directly; ``.proto`` (used by
the feature server, ``to_dict(include_event_timestamps=True)`` and ``to_tensor``) is built on
first access with Feast's own converters, so both views of a response carry the same values.
"""

from __future__ import annotations

from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from fs_platform.order import in_order
from fs_platform.plugins.redis_store.reader import PRESENT


def feature_vector(values: list, vt: ValueType, statuses: list[int], event_us: list[int] | None):
    if event_us is None:
        stamps = [Timestamp()] * len(values)
    else:
        stamps = [Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000) for us in event_us]
    return GetOnlineFeaturesResponse.FeatureVector(
        values=python_values_to_proto_values(values, vt), statuses=statuses, event_timestamps=stamps
    )


class ColumnarOnlineResponse(OnlineResponse):
    """Columns in output order; ``meta[name] = (type, statuses, event_us)``.

    ``event_us`` is None for entity columns."""

    def __init__(
        self,
        columns: dict[str, list],
        meta: dict[str, tuple[ValueType, list[int], list[int] | None]],
        feature_types: dict[str, ValueType],
    ):
        self._columns = columns
        self._meta = meta
        self._feature_types = feature_types
        self._proto: GetOnlineFeaturesResponse | None = None

    @property
    def proto(self) -> GetOnlineFeaturesResponse:
        if self._proto is None:
            resp = GetOnlineFeaturesResponse()
            for name, values in self._columns.items():
                vt, statuses, event_us = self._meta[name]
                resp.metadata.feature_names.val.append(name)
                resp.results.append(feature_vector(values, vt, statuses, event_us))
            self._proto = resp
        return self._proto

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, list]:
        if include_event_timestamps:
            return super().to_dict(include_event_timestamps=True)
        return {name: list(values) for name, values in self._columns.items()}


def entity_meta(vt: ValueType, n: int) -> tuple[ValueType, list[int], None]:
    return vt, [PRESENT] * n, None


def in_requested_order(response: OnlineResponse, names: list[str]) -> OnlineResponse:
    """``response`` with its feature columns in ``names`` order (entity columns first, as they came):
    Feast groups them per view, in set order (so not even stable between processes)."""
    if isinstance(response, ColumnarOnlineResponse):
        response._columns = {c: response._columns[c] for c in in_order(list(response._columns), names)}
        response._proto = None
        return response
    proto = response.proto
    current = list(proto.metadata.feature_names.val)
    position = {n: i for i, n in enumerate(current)}
    order = [position[c] for c in in_order(current, names)]
    if order != list(range(len(current))):
        results = [proto.results[i] for i in order]
        del proto.metadata.feature_names.val[:]
        proto.metadata.feature_names.val.extend(current[i] for i in order)
        copies = [type(r)() for r in results]
        for copy, r in zip(copies, results, strict=True):
            copy.CopyFrom(r)
        del proto.results[:]
        proto.results.extend(copies)
    return response
