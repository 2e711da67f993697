"""Small delta-rs helpers: where a ``DeltaSource`` lives, its schema, its version, reading it in Spark.

Path tables are inspected with delta-rs (reads only the Delta log, no Spark). Catalog tables
(``DeltaSource(table=...)``) can only be resolved by the Spark catalog, so they go through Spark.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from fs_platform.errors import SourceNotFoundError

_SPARK_PRIMITIVES = {
    "long": "bigint",
    "integer": "int",
    "short": "smallint",
    "byte": "tinyint",
    # Naive timestamps are read as UTC instants by this store (sessions run with a UTC time zone).
    "timestamp_ntz": "timestamp",
}
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def resolve_location(source: Any, repo_config: Any = None) -> str:
    """Absolute location of a path source (or of a feature view's batch source); relative paths
    resolve against the feature repo folder. ``SourceNotFoundError`` if the source has no path
    (a catalog table)."""
    source = getattr(source, "batch_source", source)
    if not getattr(source, "path", None):
        raise SourceNotFoundError(
            f"source {getattr(source, 'name', source)!r} has no Delta path (a catalog table?)",
            hint="this operation needs a DeltaSource(path=...)",
        )
    return resolve_path(source.path, getattr(repo_config, "repo_path", None))


def resolve_path(path: str, base: str | Path | None = None) -> str:
    """``path`` itself if it is a URI or absolute, else ``path`` under ``base`` (default: the
    working directory): how every Delta location in a feature repo is resolved."""
    if "://" in path or Path(path).is_absolute():
        return path
    return str((Path(base) if base else Path.cwd()) / path)


def storage_options(source: Any) -> dict[str, str]:
    """The source's object-store options, with ``${VAR}`` values taken from the environment.

    Lets a repo say ``AWS_SECRET_ACCESS_KEY: ${AWS_SECRET_ACCESS_KEY}`` without a secret in git.
    """
    resolved = {}
    for key, value in (source.storage_options or {}).items():
        match = _ENV_REF.match(value)
        resolved[key] = os.environ.get(match.group(1), "") if match else value
    return resolved


def open_table(source: Any, repo_config: Any = None, version: int | None = None) -> DeltaTable:
    """The ``DeltaTable`` of a path source at the version a read should use.

    ``version`` (a replay pin) wins, then the source's own ``version`` / ``timestamp_as_of``, else the
    latest commit. Raises ``SourceNotFoundError`` if there is no table (or no such version).
    """
    location = resolve_location(source, repo_config)
    pin = version if version is not None else source.version
    try:
        table = DeltaTable(location, storage_options=storage_options(source) or None)
        if pin is not None:
            table.load_as_version(pin)
        elif source.timestamp_as_of:
            table.load_as_version(source.timestamp_as_of)
    except TableNotFoundError as exc:
        raise SourceNotFoundError(
            f"Delta table of source {source.name!r} not found at {location}",
            hint="write the table first, or fix the DeltaSource path in the feature repo",
        ) from exc
    except Exception as exc:  # delta-rs raises DeltaError / ValueError for a missing version
        raise SourceNotFoundError(
            f"source {source.name!r}: cannot load version {pin or source.timestamp_as_of} of {location}: "
            f"{exc}".splitlines()[0],
        ) from exc
    return table


def table_exists(source: Any, repo_config: Any = None) -> bool:
    """Whether a path source has a Delta log (catalog tables: ask Spark, see :func:`delta_schema`)."""
    location = resolve_location(source, repo_config)
    return DeltaTable.is_deltatable(location, storage_options=storage_options(source) or None)


def current_version(source: Any, repo_config: Any = None) -> int | None:
    """Delta version a read of the source sees now (its pin, else latest; ``None`` for catalog tables)."""
    if source.table:
        return None
    return open_table(source, repo_config).version()


def delta_schema(source: Any, repo_config: Any = None) -> list[tuple[str, str]]:
    """``(column, spark simple type)`` pairs of the source's table, e.g. ``("amount", "double")``."""
    if source.table:
        from fs_platform.plugins.delta.engine import get_spark

        try:
            schema = get_spark(repo_config).table(source.table).schema
        except Exception as exc:  # AnalysisException: unknown table
            raise SourceNotFoundError(
                f"catalog table {source.table!r} of source {source.name!r} not found",
                hint="check the DeltaSource table name and the Spark catalog",
            ) from exc
        # Spark's names, normalised like delta-rs's (timestamp_ntz is read as UTC timestamp).
        return [
            (f.name, _SPARK_PRIMITIVES.get(t, t)) for f in schema.fields for t in [f.dataType.simpleString()]
        ]
    return schema_of(open_table(source, repo_config))


def schema_of(table: DeltaTable) -> list[tuple[str, str]]:
    """``(column, spark simple type)`` pairs of an open delta-rs table."""
    return [(f.name, _spark_type(f.type)) for f in table.schema().fields]


def _spark_type(delta_type: Any) -> str:
    kind = type(delta_type).__name__
    if kind == "PrimitiveType":
        name = delta_type.type
        return _SPARK_PRIMITIVES.get(name, name)
    if kind == "ArrayType":
        return f"array<{_spark_type(delta_type.element_type)}>"
    if kind == "MapType":
        return f"map<{_spark_type(delta_type.key_type)},{_spark_type(delta_type.value_type)}>"
    if kind == "StructType":
        return "struct<" + ",".join(f"{f.name}:{_spark_type(f.type)}" for f in delta_type.fields) + ">"
    return str(delta_type)


def read_source(spark: Any, source: Any, repo_config: Any = None, version: int | None = None) -> Any:
    """A Spark DataFrame over the source, at ``version`` if given, else at the source's own pin."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    elif source.version is not None:
        reader = reader.option("versionAsOf", source.version)
    elif source.timestamp_as_of:
        reader = reader.option("timestampAsOf", source.timestamp_as_of)
    if source.table:
        return reader.table(source.table)
    return reader.load(resolve_location(source, repo_config))
