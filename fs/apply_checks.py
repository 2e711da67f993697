"""The checks ``Platform.apply`` runs on a repo's definitions before anything is registered: batch
sources readable, Delta tables servable by their views, on-demand views' transformations runnable on
sample values (an error naming the view instead of Feast's bare traceback)."""

from __future__ import annotations

from fs_platform.errors import FsError, RepoError


def validate_sources(contents, config) -> None:
    """Every batch source must exist and be readable before anything is registered."""
    for view in contents.feature_views:
        source = view.batch_source
        if source is None:
            continue
        try:
            source.validate(config)
        except Exception as e:
            if isinstance(e, FsError):  # ours already names the culprit (e.g. SourceNotFoundError)
                raise
            raise RepoError(
                f"feature view {view.name!r}: source {source.name!r} is not readable: {e}",
                hint="create the table (e.g. `fs demo` writes the example data) or fix its path",
            ) from e


def check_schemas(contents, config) -> None:
    """Every view with a Delta source must be servable from its table, with retrieval's own check
    (``fs_platform.plugins.delta.schema``): ``SchemaMismatchError`` listing every problem, nothing applied."""
    from fs_platform.plugins.delta.schema import error, schema_problems, table_columns
    from fs_platform.plugins.delta.source import DeltaSource

    problems = []
    for view in [*contents.feature_views, *contents.stream_feature_views]:
        if isinstance(view.batch_source, DeltaSource):
            problems += schema_problems(view, table_columns(view, config))
    if problems:
        raise error(
            problems,
            hint="fix the views or their Delta tables, then rerun `fs apply` (nothing was applied)",
        )


def on_demand_error(contents, store, project: str) -> RepoError | None:
    """Feast runs every on-demand view's transformation on sample values of its inputs' declared
    types (``'hello world'`` for a string) and lets the transformation's own error through,
    naming nothing. Find the view that fails and name it with its inputs, the retyped ones first."""
    for odfv in contents.on_demand_feature_views:
        try:
            odfv.infer_features()
        except Exception as e:
            declared = _odfv_inputs(odfv)
            try:
                registered = _odfv_inputs(store.registry.get_on_demand_feature_view(odfv.name, project))
            except Exception:
                registered = {}
            changed = [
                f"{name} {registered[name]} -> {kind}"
                for name, kind in declared.items()
                if name in registered and registered[name] != kind
            ]
            inputs = (
                f"retyped input {', '.join(changed)}"
                if changed
                else ("inputs " + ", ".join(f"{name} {kind}" for name, kind in declared.items()))
            )
            return RepoError(
                f"on-demand feature view {odfv.name!r} fails on sample values of its inputs' declared types "
                f"({inputs}): {type(e).__name__}: {_first_line(e)}",
                hint="make the transformation accept the declared types, or declare the input's type back",
            )
    return None


def _odfv_inputs(odfv) -> dict[str, str]:
    """``source:feature -> declared type`` of an on-demand view's inputs (views and request sources)."""
    inputs = {}
    for name, projection in odfv.source_feature_view_projections.items():
        inputs.update({f"{name}:{f.name}": str(f.dtype) for f in projection.features})
    for name, request in odfv.source_request_sources.items():
        inputs.update({f"{name}:{f.name}": str(f.dtype) for f in request.schema})
    return inputs


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]
