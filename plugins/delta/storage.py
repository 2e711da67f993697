"""Writing to Delta: appends with a schema check, saved datasets, feature-service logs.

Writes go through delta-rs (one optimistic-concurrency commit, no Spark round trip); catalog
tables, which only Spark can resolve, are appended through Spark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from feast.data_source import DataSource
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_logging import LoggingDestination
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.protos.feast.core.FeatureService_pb2 import LoggingConfig as LoggingConfigProto
from feast.protos.feast.core.SavedDataset_pb2 import SavedDatasetStorage as SavedDatasetStorageProto
from feast.saved_dataset import SavedDatasetStorage

from fs_platform.errors import SchemaMismatchError
from fs_platform.plugins.delta.source import DeltaSource
from fs_platform.plugins.delta.tables import open_table, resolve_location, storage_options
from fs_platform.timeutil import microsecond_timestamps

SOURCE_VERSIONS_KEY = "fs.source_versions"


def append(source: DeltaSource, table: pa.Table, repo_config: Any = None) -> None:
    """Append ``table`` to the source's existing Delta table after checking it fits the schema.

    Columns are matched by name (order does not matter) and cast to the Delta types; a missing,
    extra or uncastable column raises ``SchemaMismatchError`` naming it, and nothing is written.
    """
    if source.table:
        from fs_platform.plugins.delta.engine import get_spark

        spark = get_spark(repo_config)
        target = pa.schema(spark.table(source.table).limit(0).toArrow().schema)
        fitted = _fit(table, target, source)
        spark.createDataFrame(fitted).write.format("delta").mode("append").saveAsTable(source.table)
        return
    delta = open_table(source, repo_config)
    fitted = _fit(table, pa.schema(delta.schema().to_arrow()), source)
    write_deltalake(delta, fitted, mode="append")


def _fit(table: pa.Table, target: pa.Schema, source: DeltaSource) -> pa.Table:
    where = f"source {source.name!r}"
    extra = sorted(set(table.column_names) - set(target.names))
    if extra:
        raise SchemaMismatchError(f"{where}: columns {extra} are not in the Delta table (has {target.names})")
    columns = []
    for field in target:
        if field.name not in table.column_names:
            raise SchemaMismatchError(f"{where}: column {field.name!r} is missing from the rows to write")
        column = table[field.name]
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            # Not Arrow's message: it quotes the offending value (feature values may be PII).
            raise SchemaMismatchError(
                f"{where}: column {field.name!r} is {column.type}, Delta has {field.type} "
                "(a value does not convert: out of range or lossy)"
            ) from exc
    return pa.table(columns, schema=target)


class SavedDatasetDeltaStorage(SavedDatasetStorage):
    """Where ``FeatureStore.create_saved_dataset`` writes a training set: a Delta table at ``path``."""

    _proto_attr_name = "custom_storage"

    def __init__(self, path: str, storage_options: dict[str, str] | None = None):
        self.path = path
        self.storage_options = dict(storage_options or {})

    def to_data_source(self) -> DataSource:
        return DeltaSource(
            name=f"saved_dataset:{self.path}",
            path=self.path,
            timestamp_field="event_timestamp",
            storage_options=self.storage_options,
        )

    def to_proto(self) -> SavedDatasetStorageProto:
        options = {"path": self.path, "storage_options": self.storage_options}
        return self._custom_storage_proto(
            DataSourceProto.CustomSourceOptions(configuration=json.dumps(options).encode())
        )

    @staticmethod
    def from_proto(storage_proto: SavedDatasetStorageProto) -> SavedDatasetDeltaStorage:
        options = json.loads(storage_proto.custom_storage.configuration)
        return SavedDatasetDeltaStorage(options["path"], options.get("storage_options"))

    @staticmethod
    def from_data_source(data_source: DataSource) -> SavedDatasetDeltaStorage:
        assert isinstance(data_source, DeltaSource) and data_source.path
        return SavedDatasetDeltaStorage(data_source.path, data_source.storage_options)


def write_saved_dataset(
    table: pa.Table,
    storage: SavedDatasetDeltaStorage,
    repo_config: Any,
    source_versions: dict[str, int | None],
    allow_overwrite: bool,
) -> None:
    """Write a retrieval result as a Delta table; the commit records the source versions read."""
    source = storage.to_data_source()
    location = resolve_location(source, repo_config)
    options = storage_options(source) or None
    if DeltaTable.is_deltatable(location, storage_options=options) and not allow_overwrite:
        raise SavedDatasetLocationAlreadyExists(location=location)
    write_deltalake(
        location,
        microsecond_timestamps(table),
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=options,
        commit_properties=CommitProperties(
            custom_metadata={SOURCE_VERSIONS_KEY: json.dumps(source_versions, sort_keys=True)}
        ),
    )


def recorded_source_versions(
    storage: SavedDatasetDeltaStorage, repo_config: Any = None
) -> dict[str, int | None]:
    """The source versions a saved dataset was built from (for ``pinned_versions``)."""
    table = open_table(storage.to_data_source(), repo_config)
    for commit in table.history():
        if SOURCE_VERSIONS_KEY in commit:
            return json.loads(commit[SOURCE_VERSIONS_KEY])
    return {}


class DeltaLoggingDestination(LoggingDestination):
    """Feature-service logs appended to a Delta table at ``path`` (created on first write)."""

    _proto_kind = "delta_destination"

    def __init__(self, *, path: str, storage_options: dict[str, str] | None = None):
        self.path = path
        self.storage_options = dict(storage_options or {})

    @classmethod
    def from_proto(cls, config_proto: LoggingConfigProto) -> DeltaLoggingDestination:
        config = dict(config_proto.custom_destination.config)
        return cls(path=config["path"], storage_options=json.loads(config.get("storage_options", "{}")))

    def to_proto(self) -> LoggingConfigProto:
        return LoggingConfigProto(
            custom_destination=LoggingConfigProto.CustomDestination(
                kind=self._proto_kind,
                config={"path": self.path, "storage_options": json.dumps(self.storage_options)},
            )
        )

    def to_data_source(self) -> DataSource:
        return DeltaSource(
            name=f"feature_log:{self.path}",
            path=self.path,
            timestamp_field="__log_timestamp",
            storage_options=self.storage_options,
        )


def write_logs(data: pa.Table | Path, destination: DeltaLoggingDestination, repo_config: Any) -> None:
    """Append logged features; the table is created by the first write with the log schema."""
    import pyarrow.parquet as pq

    table = pq.read_table(data) if isinstance(data, Path) else data
    source = destination.to_data_source()
    location = resolve_location(source, repo_config)
    options = storage_options(source) or None
    if DeltaTable.is_deltatable(location, storage_options=options):
        append(source, microsecond_timestamps(table), repo_config)
    else:
        write_deltalake(location, microsecond_timestamps(table), mode="append", storage_options=options)
