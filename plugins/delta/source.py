"""``DeltaSource``: a Feast batch source over one Delta Lake table.

Stored in the registry as a Feast CUSTOM_SOURCE; its options travel as JSON in
``custom_options.configuration`` so any process that can import this module can read it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from feast.data_source import DataSource
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.repo_config import RepoConfig
from feast.type_map import spark_to_feast_value_type
from feast.value_type import ValueType

_CLASS_PATH = "fs_platform.plugins.delta.source.DeltaSource"


class DeltaSource(DataSource):
    """A Delta table (by path or catalog table name) that feature views read from.

    Args:
        name: unique source name in the project.
        path: table location: a local folder, ``s3://``, ``abfss://`` or ``gs://`` URI. A relative
            local path is resolved against the feature repo folder.
        table: a catalog table name (``db.table``) instead of ``path``.
        timestamp_field: event-time column used by point-in-time joins.
        created_timestamp_column: tie-break column when two rows share an event time.
        field_mapping: source column -> feature name.
        date_partition_column: a date column the table is partitioned by; used to prune reads.
        version: pin reads to this Delta version (time travel).
        timestamp_as_of: pin reads to the table as of this ISO timestamp (time travel).
        storage_options: object-store options (names of environment variables are fine; secrets
            should come from the environment, never from the repo).
    """

    def __init__(
        self,
        *,
        name: str,
        path: str | None = None,
        table: str | None = None,
        timestamp_field: str = "",
        created_timestamp_column: str = "",
        field_mapping: dict[str, str] | None = None,
        date_partition_column: str = "",
        version: int | None = None,
        timestamp_as_of: str | None = None,
        storage_options: dict[str, str] | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str = "",
    ):
        if bool(path) == bool(table):
            raise ValueError(f"DeltaSource {name!r}: give exactly one of path= or table=")
        if version is not None and timestamp_as_of is not None:
            raise ValueError(f"DeltaSource {name!r}: give at most one of version= or timestamp_as_of=")
        super().__init__(
            name=name,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            field_mapping=field_mapping,
            description=description,
            tags=tags,
            owner=owner,
            date_partition_column=date_partition_column,
        )
        self.path = path
        self.table = table
        self.version = version
        self.timestamp_as_of = timestamp_as_of
        self.storage_options = dict(storage_options or {})

    # -- registry round trip -------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "table": self.table,
            "version": self.version,
            "timestamp_as_of": self.timestamp_as_of,
            "storage_options": self.storage_options,
        }

    def _to_proto_impl(self) -> DataSourceProto:
        proto = DataSourceProto(
            name=self.name,
            type=DataSourceProto.CUSTOM_SOURCE,
            data_source_class_type=_CLASS_PATH,
            field_mapping=self.field_mapping,
            date_partition_column=self.date_partition_column,
            description=self.description,
            tags=self.tags,
            owner=self.owner,
            custom_options=DataSourceProto.CustomSourceOptions(
                configuration=json.dumps(self._options(), sort_keys=True).encode()
            ),
        )
        proto.timestamp_field = self.timestamp_field
        proto.created_timestamp_column = self.created_timestamp_column
        return proto

    @staticmethod
    def from_proto(data_source: DataSourceProto) -> DeltaSource:
        opts = json.loads(data_source.custom_options.configuration or b"{}")
        return DeltaSource(
            name=data_source.name,
            path=opts.get("path"),
            table=opts.get("table"),
            version=opts.get("version"),
            timestamp_as_of=opts.get("timestamp_as_of"),
            storage_options=opts.get("storage_options") or {},
            timestamp_field=data_source.timestamp_field,
            created_timestamp_column=data_source.created_timestamp_column,
            field_mapping=dict(data_source.field_mapping),
            date_partition_column=data_source.date_partition_column,
            description=data_source.description,
            tags=dict(data_source.tags),
            owner=data_source.owner,
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DeltaSource) and super().__eq__(other) and self._options() == other._options()
        )

    def __hash__(self) -> int:
        return super().__hash__()

    # -- schema ------------------------------------------------------------------------------
    def source_type(self) -> DataSourceProto.SourceType.ValueType:
        return DataSourceProto.CUSTOM_SOURCE

    @staticmethod
    def source_datatype_to_feast_value_type() -> Callable[[str], ValueType]:
        return spark_to_feast_value_type

    def validate(self, config: RepoConfig) -> None:
        self.get_table_column_names_and_types(config)

    def get_table_column_names_and_types(self, config: RepoConfig) -> Iterable[tuple[str, str]]:
        """Column names and Spark simple type strings, read from the Delta log (no Spark needed)."""
        from fs_platform.plugins.delta.tables import delta_schema

        return delta_schema(self, config)

    def get_table_query_string(self) -> str:
        if self.table:
            return ".".join(f"`{p}`" for p in self.table.split("."))
        return f"delta.`{self.path}`"
