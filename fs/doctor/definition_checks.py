"""Checks that what runs still matches the repo's definitions:

``registry``  the registry is unreachable, or differs from the repo (``fs plan``)
``schema``    a view's Delta table no longer fits the view: proposes ``restore_delta`` to the last
              version that did
``catalog``   catalog pages (``ops.catalog_docs``) differ from the registry: proposes
              ``regenerate_catalog_docs``
"""

from __future__ import annotations

from fs_platform.doctor.actions import new_action
from fs_platform.doctor.context import CheckContext
from fs_platform.doctor.model import Finding, Severity, error_finding

MAX_VERSIONS_BACK = 20  # how far back restore_delta looks for a version that fits


def check_registry(c: CheckContext) -> list[Finding]:
    try:
        c.store.list_feature_views()
    except Exception as e:
        return [error_finding("registry", "registry", e)]
    plan = c.platform.plan()
    if plan.empty:
        return [
            Finding(
                "registry", Severity.OK, "registry", "reachable and in sync with the repo (fs plan is empty)"
            )
        ]
    changes = [f"{ch.action} {ch.kind} {ch.name}" for ch in [*plan.changes, *plan.infra_changes]]
    return [
        Finding(
            "registry",
            Severity.WARNING,
            "registry",
            f"the registry differs from the repo: {len(changes)} change(s) not applied",
            {"changes": changes[:50]},
        )
    ]  # (an apply is a reviewed change: `fs plan`, then `fs apply`)


def check_schema(c: CheckContext) -> list[Finding]:
    from deltalake import DeltaTable

    from fs_platform.plugins.delta.schema import schema_problems, table_columns
    from fs_platform.plugins.delta.source import DeltaSource
    from fs_platform.plugins.delta.tables import resolve_location, schema_of, storage_options

    findings = []
    views = [*c.store.list_feature_views(), *c.store.list_stream_feature_views()]
    for fv in views:
        if not c.wanted(fv.name) or not isinstance(fv.batch_source, DeltaSource) or not fv.batch_source.path:
            continue
        try:
            problems = schema_problems(fv, table_columns(fv, c.store.config))
        except Exception as e:
            findings.append(error_finding("schema", fv.name, e))
            continue
        if not problems:
            continue
        location = resolve_location(fv, c.store.config)
        table = DeltaTable(location, storage_options=storage_options(fv.batch_source) or None)
        current = table.version()
        fits = None
        for v in range(current - 1, max(-1, current - 1 - MAX_VERSIONS_BACK), -1):
            try:
                table.load_as_version(v)
            except Exception:
                break
            if not schema_problems(fv, dict(schema_of(table))):
                fits = v
                break
        actions = ()
        if fits is not None:
            actions = (
                new_action(
                    "restore_delta",
                    {"view": fv.name, "version": fits},
                    f"the Delta table of {fv.name!r} no longer fits the view; version {fits} did",
                ),
            )
        findings.append(
            Finding(
                "schema",
                Severity.ERROR,
                fv.name,
                f"the Delta table of {fv.name!r} does not fit the view: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                {"problems": problems, "version": current, "last_fitting_version": fits},
                actions,
            )
        )
    if not findings:
        findings.append(Finding("schema", Severity.OK, "schema", "every view's Delta table fits the view"))
    return findings


def check_catalog(c: CheckContext) -> list[Finding]:
    from pathlib import Path

    from fs_platform.doctor.policy import load_ops_settings
    from fs_platform.governance.catalog import build_catalog, catalog_pages, stale_pages
    from fs_platform.plugins.delta.tables import resolve_path

    where = load_ops_settings(c.platform.config).catalog_docs
    if not where:
        return [
            Finding(
                "catalog", Severity.OK, "catalog", "ops.catalog_docs is not set: catalog pages not checked"
            )
        ]
    out = Path(resolve_path(where, c.platform.repo_path))
    pages = catalog_pages(build_catalog(c.store))
    changed = sorted(
        n for n, text in pages.items() if not (out / n).is_file() or (out / n).read_text() != text
    )
    removed = stale_pages(pages, out) if out.is_dir() else []
    if not changed and not removed:
        return [
            Finding("catalog", Severity.OK, "catalog", f"the catalog pages in {where} match the registry")
        ]
    a = new_action(
        "regenerate_catalog_docs",
        {"path": str(out)},
        f"{len(changed) + len(removed)} catalog page(s) in {where} differ from the registry",
    )
    return [
        Finding(
            "catalog",
            Severity.WARNING,
            "catalog",
            f"the catalog pages in {where} are out of date: {len(changed)} to (re)write, {len(removed)} of "
            "deleted views to remove",
            {"changed": changed[:50], "removed": removed[:50]},
            (a,),
        )
    ]
