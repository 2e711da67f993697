"""Value encoding: one JSON array per (entity, feature view) row.

    [event_us, created_us, schema_fp, v1, v2, ..., vn]      (features in view order)

Why JSON: the stdlib decoder is C, handles exact float round trips (repr), NaN/inf, big ints,
and a whole MGET reply decodes in ONE ``json.loads`` call by joining the replies into one
array, so a 100-entity read does no per-value Python work for scalar types. The two leading
integers let the write script compare timestamps with a cheap pattern match.

Scalar and list types of int32/int64/float/double/string/bool are stored as JSON natives
(identity to what Feast returns in ``to_dict``). Every other Feast type is stored as the
base64 of its serialized ``ValueProto`` and decoded per value (correct, slower).

``schema_fp`` (crc32 of the ordered ``name:type`` list) lets a reader detect rows written
under an older schema; writers register each fingerprint's field list in ``<ns>_schemas``
so such rows are remapped by name instead of misread by position.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType

from fs_platform.casts import checked_cast
from fs_platform.errors import OnlineWriteError

_NATIVE = {
    ValueType.INT32,
    ValueType.INT64,
    ValueType.FLOAT,
    ValueType.DOUBLE,
    ValueType.STRING,
    ValueType.BOOL,
    ValueType.INT32_LIST,
    ValueType.INT64_LIST,
    ValueType.FLOAT_LIST,
    ValueType.DOUBLE_LIST,
    ValueType.STRING_LIST,
    ValueType.BOOL_LIST,
}

# Arrow types accepted per native Feast type; anything else is a type error on write.
_ARROW_OK = {
    ValueType.INT32: (pa.types.is_integer,),
    ValueType.INT64: (pa.types.is_integer,),
    ValueType.FLOAT: (pa.types.is_floating, pa.types.is_integer),
    ValueType.DOUBLE: (pa.types.is_floating, pa.types.is_integer),
    ValueType.STRING: (pa.types.is_string, pa.types.is_large_string),
    ValueType.BOOL: (pa.types.is_boolean,),
}
ARROW_OK = _ARROW_OK  # public: also the schema check of fs.governance.validate
_ARROW_CAST = {
    ValueType.INT32: pa.int32(),
    ValueType.INT64: pa.int64(),
    ValueType.FLOAT: pa.float32(),
    ValueType.DOUBLE: pa.float64(),
    ValueType.STRING: pa.string(),
    ValueType.BOOL: pa.bool_(),
}

_NUMBERS = {ValueType.INT32, ValueType.INT64, ValueType.FLOAT, ValueType.DOUBLE}


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=True, ensure_ascii=False).encode

HEADER = 3  # event_us, created_us, schema_fp


def created_us(stored: bytes) -> int:
    """The created time of a stored row, read from its header without decoding the values."""
    return int(stored[1:].split(b",", 2)[1])


_INTEGRAL = r"^-?[0-9]+$"
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'  # what json.dumps(ensure_ascii=False) escapes


def _json_floats(col):
    """float64 -> JSON text equal in value and type to ``json.dumps`` (Python ``repr``).

    Arrow prints the shortest round-trip digits (exactly the same double when parsed) but writes
    integral values without a fraction (``3``: would decode as an int) and ``nan``/``inf``."""
    text = pc.cast(col, pa.string())
    text = pc.if_else(
        pc.match_substring_regex(text, _INTEGRAL), pc.binary_join_element_wise(text, ".0", ""), text
    )
    if pc.any(pc.is_nan(col)).as_py():
        text = pc.if_else(pc.is_nan(col), "NaN", text)
    if pc.any(pc.is_inf(col)).as_py():
        text = pc.if_else(pc.is_inf(col), pc.if_else(pc.greater(col, 0), "Infinity", "-Infinity"), text)
    return text


def _json_strings(col):
    """Strings -> JSON string literals; only columns holding a character JSON escapes pay the
    per-value path (rare: quotes, backslashes, control characters)."""
    if pc.any(pc.match_substring_regex(col, _NEEDS_ESCAPE)).as_py():
        return pa.array([None if v is None else _dumps(v) for v in col.to_pylist()], pa.string())
    return pc.binary_join_element_wise('"', col, '"', "")


def _proto_field(vt: ValueType) -> str:
    return vt.name.lower() + "_val"


def _parse_proto(b64: str | None, vt: ValueType):
    if b64 is None:
        return None
    proto = ValueProto()
    proto.ParseFromString(base64.b64decode(b64))
    return feast_value_type_to_python_type(proto, vt)


class ViewCodec:
    """Encoding of one feature view's rows; built once per view definition and cached."""

    def __init__(self, view: FeatureView):
        self.view_name = view.name
        self.names: list[str] = [f.name for f in view.features]
        self.types: list[ValueType] = [f.dtype.to_value_type() for f in view.features]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.native = [t in _NATIVE for t in self.types]
        self.fields = [_proto_field(t) for t in self.types]
        self.schema_json = _dumps([[n, t.name] for n, t in zip(self.names, self.types, strict=True)])
        self.fingerprint = zlib.crc32(self.schema_json.encode())
        self._remaps: dict[int, list[int | None]] = {}

    # --- writes -------------------------------------------------------------------------
    def values_from_protos(self, values: Mapping[str, ValueProto]) -> list:
        """Feature values in view order from Feast's ``{name: ValueProto}``; missing -> null."""
        out = [None] * len(self.names)
        for name, proto in values.items():
            i = self.index.get(name)
            if i is None:
                raise OnlineWriteError(
                    f"feature view {self.view_name!r} has no feature {name!r}",
                    hint="run `fs apply` if the view definition changed",
                )
            which = proto.WhichOneof("val")
            if which is None or which == "null_val":
                continue
            if which != self.fields[i]:
                raise OnlineWriteError(
                    f"feature {self.view_name}:{name} is {self.types[i].name}, got a {which} value"
                )
            if self.native[i]:
                v = getattr(proto, which)
                out[i] = list(v.val) if hasattr(v, "val") else v
            else:
                out[i] = base64.b64encode(proto.SerializeToString()).decode("ascii")
        return out

    def columns_from_arrow(self, table: pa.Table) -> list[list]:
        """Feature columns (view order) as Python lists, type-checked and cast like Feast would."""
        return [self._column_values(table, i) for i in range(len(self.names))]

    def _checked_cast(self, col: pa.ChunkedArray, i: int) -> pa.ChunkedArray:
        """A native scalar column type-checked and cast to its Feast type's Arrow type."""
        name, vt = self.names[i], self.types[i]
        if vt in _NUMBERS and _is_number(col.type):
            # Any number to the declared numeric type, every value checked to fit (fs.casts: one
            # ValueDoesNotFitError naming view, feature and count). FLOAT rounds through float32 so
            # Arrow and protobuf writes store the same value.
            return checked_cast(col, _ARROW_CAST[vt], view=self.view_name, feature=name)
        if not any(ok(col.type) for ok in _ARROW_OK[vt]):
            raise OnlineWriteError(f"feature {self.view_name}:{name} is {vt.name}, got arrow type {col.type}")
        try:
            return pc.cast(col, _ARROW_CAST[vt], safe=True)
        except pa.ArrowInvalid:
            # Arrow's message quotes the offending value (it may be PII): name the feature and types.
            raise OnlineWriteError(
                f"feature {self.view_name}:{name}: a value does not fit {vt.name} (arrow {col.type} -> "
                f"{_ARROW_CAST[vt]}: out of range or lossy)"
            ) from None

    def _column_values(self, table: pa.Table, i: int) -> list:
        name, vt = self.names[i], self.types[i]
        if name not in table.column_names:
            return [None] * table.num_rows
        col = table.column(name)
        if vt in _ARROW_OK:
            return self._checked_cast(col, i).to_pylist()
        protos = python_values_to_proto_values(col.to_pylist(), vt)
        if self.native[i]:  # list types: Feast's converter checks the elements
            return [self._native_from_proto(p, i) for p in protos]
        return [
            None
            if p.WhichOneof("val") in (None, "null_val")
            else base64.b64encode(p.SerializeToString()).decode("ascii")
            for p in protos
        ]

    def _json_column(self, table: pa.Table, i: int) -> pa.Array | pa.ChunkedArray | str:
        """Feature ``i`` as JSON text per row (``null`` for missing), built by Arrow compute for
        scalar types; other types go through the per-value path."""
        name, vt = self.names[i], self.types[i]
        if name not in table.column_names:
            return "null"
        if vt not in _ARROW_OK:
            values = self._column_values(table, i)
            text = pa.array([None if v is None else _dumps(v) for v in values], pa.string())
        elif vt in (ValueType.FLOAT, ValueType.DOUBLE):
            text = _json_floats(self._checked_cast(table.column(name), i).cast(pa.float64()))
        elif vt == ValueType.STRING:
            text = _json_strings(self._checked_cast(table.column(name), i))
        else:  # integers -> decimal, bool -> true/false: Arrow's text is already JSON
            text = pc.cast(self._checked_cast(table.column(name), i), pa.string())
        return pc.fill_null(text, "null") if text.null_count else text

    def encode_arrow(self, table: pa.Table, event_us: pa.Array, created_us: pa.Array) -> pa.Array:
        """Rows of ``table`` encoded exactly as ``encode`` would (same JSON values and types),
        as one Arrow string array built column-wise: no per-value Python for scalar features."""
        parts = [pc.cast(event_us, pa.string()), pc.cast(created_us, pa.string()), str(self.fingerprint)]
        parts += [self._json_column(table, i) for i in range(len(self.names))]
        body = pc.binary_join_element_wise(*parts, ",")
        out = pc.binary_join_element_wise("[", body, "]", "")
        return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out

    def _native_from_proto(self, proto: ValueProto, i: int):
        which = proto.WhichOneof("val")
        if which is None or which == "null_val":
            return None
        if which != self.fields[i]:
            raise OnlineWriteError(
                f"feature {self.view_name}:{self.names[i]} is {self.types[i].name}, got {which}"
            )
        return list(getattr(proto, which).val)

    def encode(self, event_us: int, created_us: int, values: Sequence) -> str:
        return _dumps([event_us, created_us, self.fingerprint, *values])

    # --- reads --------------------------------------------------------------------------
    def decoder(self, i: int):
        """Per-value decoder for feature ``i`` (None when the stored JSON is already the value)."""
        if self.native[i]:
            return None
        vt = self.types[i]
        return lambda v: _parse_proto(v, vt)

    def remap(self, fingerprint: int, old_schema_json: str) -> list[int | None]:
        """Position in a row of schema ``fingerprint`` of each current feature (None: absent or retyped)."""
        out = self._remaps.get(fingerprint)
        if out is None:
            old = {n: (pos, t) for pos, (n, t) in enumerate(json.loads(old_schema_json))}
            out = []
            for n, t in zip(self.names, self.types, strict=True):
                pos, old_t = old.get(n, (None, None))
                out.append(pos if old_t == t.name else None)
            self._remaps[fingerprint] = out
        return out


def to_proto(values: list, vt: ValueType) -> list[ValueProto]:
    """Python values (as returned to users) to ValueProtos, the way Feast converts them."""
    return python_values_to_proto_values(values, vt)
