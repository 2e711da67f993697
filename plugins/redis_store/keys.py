"""Redis key layout: one string key per (entity, feature view).

    <prefix>:<project>:{<join_key>=<token>[,<join_key>=<token>...]}:<feature_view>
    e.g.  fs:payments:{customer_id=42}:customer_profile

- ``prefix`` is the tenant prefix; a tenant's ACL user is confined to ``~<prefix>:*``. Prefix and
  project are restricted to ``[A-Za-z0-9_-]`` (``NAME``), so no glob character can widen that
  pattern; ``tenant_pattern`` still escapes glob characters, as the one place ACL patterns come from.
- The ``{...}`` part is a Redis Cluster hash tag: all views of one entity share a slot, so a
  read of several views is one MGET per entity and one round trip per node.
- Join keys are sorted by name; string tokens are percent-escaped for ``%{}:,=`` so the key
  is injective and the hash tag cannot end early. Integers are decimal, bytes ``0x<hex>``.
- With a per-tenant secret (``key_hash_secret_env``) the tag body is instead a keyed BLAKE2b of
  that text (128 bits, hex): ``fs:payments:{3f9a...}:customer_profile``. Key names then reveal no
  entity id to anyone who can SCAN, and one entity's views still share the tag (and slot).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from feast.value_type import ValueType

from fs_platform.entity_keys import ACCEPTED, exact
from fs_platform.errors import ConfigError, EntityKeyTypeError

_ESCAPE = str.maketrans({c: f"%{ord(c):02X}" for c in "%{}:,="})
_GLOB_ESCAPE = str.maketrans({c: "\\" + c for c in "\\*?[]"})
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
"""Safe alphabet of key prefixes and projects: no glob (``*?[]\\``), hash-tag or separator character."""


def check_name(what: str, value: str) -> str:
    """``value`` if it is a safe key-name segment, else ``ValueError`` naming the rule."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-128 letters, digits, '_' or '-', starting with a letter or digit "
            "(glob characters in a prefix would widen the tenant's ACL pattern)"
        )
    return value


def _int_token(value) -> str:
    if type(value) is int:
        return str(value)
    # 2.0 and "2" are the key 2; 2.5, "02" and True are refused (fs.entity_keys: exact casts only)
    return str(exact(value, ValueType.INT64))


def _str_token(value) -> str:
    if isinstance(value, str):
        return value.translate(_ESCAPE)
    return exact(value, ValueType.STRING).translate(_ESCAPE)  # an integer 2 is the key "2"


def _bytes_token(value) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    raise TypeError


def _arrow_tokens(col: pa.ChunkedArray, value_type: ValueType):
    """Tokens of a whole column computed by Arrow (same text as the per-value functions), or
    None when the column needs the per-value path (nulls, other types, bytes: it raises there)."""
    if col.null_count:
        return None
    if value_type in (ValueType.INT32, ValueType.INT64) and pa.types.is_integer(col.type):
        return pc.cast(col, pa.string())
    if value_type == ValueType.STRING and (
        pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
    ):
        text = col.cast(pa.string())
        for c in "%{}:,=":  # '%' first, like str.translate of _ESCAPE
            text = pc.replace_substring(text, c, f"%{ord(c):02X}")
        return text
    return None


_TOKENS: dict[ValueType, Callable[[object], str]] = {
    ValueType.INT32: _int_token,
    ValueType.INT64: _int_token,
    ValueType.STRING: _str_token,
    ValueType.BYTES: _bytes_token,
}


def token_fn(join_key: str, value_type: ValueType) -> Callable[[object], str]:
    """The canonical token function for a join key; values of the wrong type raise."""
    fn = _TOKENS.get(value_type)
    if fn is None:
        raise ConfigError(
            f"join key {join_key!r} has type {value_type.name}; the Redis store supports "
            "INT32, INT64, STRING and BYTES entity keys"
        )

    def checked(value):
        try:
            return fn(value)
        except TypeError:
            raise EntityKeyTypeError(
                f"entity value for join key {join_key!r} is not exactly {value_type.name} (a "
                f"{type(value).__name__}; accepted: {ACCEPTED[value_type]})"
            ) from None

    return checked


class KeyLayout:
    """Builds keys and scan patterns for one project in one tenant prefix."""

    def __init__(self, prefix: str, project: str, secret: str | None = None):
        """``secret``: hash entity tags with it (``None``: readable tags)."""
        for what, value in (("key_prefix", prefix), ("project", project)):
            try:
                check_name(what, value)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self.prefix = prefix
        self.namespace = f"{prefix}:{project}:"
        self.schemas_key = self.namespace + "_schemas"
        self._hash = None
        if secret is not None:
            if len(secret) < 16:
                raise ConfigError(
                    "the key hash secret must be at least 16 characters (32 random bytes advised)"
                )
            # A fixed-size BLAKE2b key derived from the secret; the tag text is the message.
            key = hashlib.sha256(b"fs-key-hash:" + secret.encode()).digest()
            blake2b = hashlib.blake2b
            self._hash = lambda tag: blake2b(tag.encode(), key=key, digest_size=16).hexdigest()

    @property
    def hashed(self) -> bool:
        return self._hash is not None

    def entity_tags(
        self, join_keys: Sequence[str], tokens: Sequence[Callable], columns: Sequence[list]
    ) -> list[str]:
        """Hash-tag bodies for entity rows given column-wise; join keys must be sorted."""
        if len(join_keys) == 1:
            head, fn = join_keys[0] + "=", tokens[0]
            tags = [head + fn(v) for v in columns[0]]
        else:
            tags = [
                ",".join(f"{jk}={fn(v)}" for jk, fn, v in zip(join_keys, tokens, row, strict=True))
                for row in zip(*columns, strict=True)
            ]
        return tags if self._hash is None else list(map(self._hash, tags))

    def arrow_keys(
        self,
        view_name: str,
        join_keys: Sequence[str],
        value_types: Sequence[ValueType],
        tokens: Sequence[Callable],
        columns: Sequence[pa.ChunkedArray],
    ) -> list[str]:
        """Keys of one view for entity columns given as Arrow (join keys sorted); the same keys as
        ``entity_tags`` + ``view_affixes``, built column-wise."""
        parts = [_arrow_tokens(c, vt) for c, vt in zip(columns, value_types, strict=True)]
        before, after = self.view_affixes(view_name)
        if not parts or any(p is None for p in parts):
            tags = self.entity_tags(join_keys, tokens, [c.to_pylist() for c in columns])
            return [before + t + after for t in tags]
        if len(columns[0]) == 0:
            return []
        named = [pc.binary_join_element_wise(jk + "=", p, "") for jk, p in zip(join_keys, parts, strict=True)]
        tags = pc.binary_join_element_wise(*named, ",")
        if self._hash is not None:
            return [before + t + after for t in map(self._hash, tags.to_pylist())]
        return pc.binary_join_element_wise(before, tags, after, "").to_pylist()

    def view_affixes(self, view_name: str) -> tuple[str, str]:
        """``(before, after)`` so that ``before + tag + after`` is the key of an entity's row."""
        return self.namespace + "{", "}:" + view_name

    def view_pattern(self, view_name: str) -> str:
        return self.namespace.translate(_GLOB_ESCAPE) + "{*}:" + view_name.translate(_GLOB_ESCAPE)

    def project_pattern(self) -> str:
        return self.namespace.translate(_GLOB_ESCAPE) + "*"

    def tenant_pattern(self) -> str:
        """ACL key pattern of every key of this tenant (all its projects, leases included)."""
        return self.prefix.translate(_GLOB_ESCAPE) + ":*"
