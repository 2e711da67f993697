"""A data source's ``field_mapping`` (source column -> feature, key or timestamp name), both ways.

Delta tables and recomputed rows carry source column names; features, join keys and the view's
timestamps are named after the mapping. Every path that crosses between the two (retrieval,
materialization, backfill, validation, governance reads) goes through these three functions.
"""

from __future__ import annotations

import pyarrow as pa

from fs_platform.errors import SchemaMismatchError


def _mapping(source) -> dict[str, str]:
    return dict(getattr(source, "field_mapping", None) or {})


def source_column(source, name: str) -> str:
    """The source column holding ``name`` (a feature, join key or timestamp name)."""
    for column, mapped in _mapping(source).items():
        if mapped == name:
            return column
    return name


def mapped_name(source, column: str) -> str:
    """The name source column ``column`` takes after the mapping."""
    return _mapping(source).get(column, column)


def to_mapped_names(table: pa.Table, source) -> pa.Table:
    """``table`` with its source columns renamed by the mapping (columns already mapped, or not in
    the mapping, keep their names; a chain ``a -> b, b -> c`` renames both at once). A rename that would
    leave two columns with one name is refused (Feast's own rename lets that through)."""
    mapping = _mapping(source)
    names = table.column_names
    renamed = [mapping.get(c, c) for c in names]
    clashes = sorted({n for n in renamed if renamed.count(n) > 1})
    if clashes:
        raise SchemaMismatchError(
            f"source {getattr(source, 'name', '?')!r}: "
            f"field_mapping renames columns onto {', '.join(clashes)}, "
            "which the data already has",
            hint="drop the mapped column from the data or the entry from field_mapping",
        )
    return table.rename_columns(renamed) if renamed != names else table
