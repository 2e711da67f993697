"""A feature view against its Delta table (or against rows about to be written to it): every problem.

The check is retrieval's own (:func:`fs_platform.plugins.delta.retrieval.check_schema` for a plain view, the
raw-events check of :mod:`fs_platform.plugins.delta.source_checks` for an aggregation view), so ``fs apply``,
backfills, materialization and retrieval accept and refuse exactly the same views. Retrieval stops at
the first problem; here every problem is reported, one line each (issue #21.4, #21.5).

    problems = schema_problems(view, table_columns(view, config))     # [] when the view fits
    check_view(view, arrow_columns(rows.schema), hint="...")          # or SchemaMismatchError
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from fs_platform.aggregation.spec import spec_of
from fs_platform.errors import SchemaMismatchError


def table_columns(view: Any, config: Any = None) -> dict[str, str]:
    """``column -> Spark simple type`` of the view's Delta table (``SourceNotFoundError`` if absent)."""
    from fs_platform.plugins.delta.tables import delta_schema

    return dict(delta_schema(view.batch_source, config))


def arrow_columns(schema: pa.Schema) -> dict[str, str]:
    """``column -> Spark simple type`` of Arrow rows, as they would be stored in Delta."""
    from deltalake import Schema

    from fs_platform.plugins.delta.tables import _spark_type

    return {f.name: _spark_type(f.type) for f in Schema.from_arrow(schema).fields}


def schema_problems(view: Any, columns: dict[str, str]) -> list[str]:
    """Every reason ``columns`` cannot serve ``view`` (one line each); empty when it can."""
    from fs_platform.plugins.delta.retrieval import plan_view
    from fs_platform.plugins.delta.retrieval import schema_problems as plain_view_problems
    from fs_platform.plugins.delta.source_checks import check_aggregation_schema, delta_source

    spec = spec_of(view)
    if spec is None:
        return plain_view_problems(view, plan_view(view, [], full_feature_names=False), columns)
    try:
        check_aggregation_schema(view, delta_source(view.batch_source, view.name), spec, columns)
    except SchemaMismatchError as e:
        return [e.message]
    return []


def check_view(view: Any, columns: dict[str, str], *, hint: str | None = None) -> None:
    """``SchemaMismatchError`` listing every problem of ``view`` against ``columns`` (see :func:`error`)."""
    problems = schema_problems(view, columns)
    if problems:
        raise error(problems, hint=hint)


def error(problems: list[str], *, hint: str | None = None) -> SchemaMismatchError:
    """One ``SchemaMismatchError`` for several problems: one line each in its message and ``problems``
    (the CLI prints one ``error:`` line each)."""
    return SchemaMismatchError("\n".join(problems), hint=hint, problems=problems)
