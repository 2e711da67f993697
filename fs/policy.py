"""Metadata policy enforced by ``fs apply``: nothing ungoverned reaches the registry."""

from __future__ import annotations

from fs_platform.metadata import PII_CLASSES, field_description, parse_duration, pii_class


def check_view(view) -> list[str]:
    """Problems with one feature view (batch, stream or on-demand), one line each."""
    kind = type(view).__name__
    where = f"{kind} {view.name!r}"
    problems = []
    if not view.owner:
        problems.append(f"{where}: missing owner (set owner='team@example.com')")
    if not view.description:
        problems.append(f"{where}: missing description")
    tags = view.tags or {}
    if not tags.get("team"):
        problems.append(f"{where}: missing tag 'team'")
    if not tags.get("tier"):
        problems.append(f"{where}: missing tag 'tier'")
    sla = tags.get("freshness_sla")
    if not sla:
        problems.append(f"{where}: missing tag 'freshness_sla' (e.g. '15m', '36h', '7d')")
    else:
        try:
            parse_duration(sla)
        except ValueError as e:
            problems.append(f"{where}: tag 'freshness_sla': {e}")
    for field in view.features:
        fwhere = f"{where} feature {field.name!r}"
        if not field_description(field, view):
            problems.append(f"{fwhere}: missing description")
        pii = pii_class(field, view)
        if not pii:
            problems.append(f"{fwhere}: missing tag 'pii' (one of {', '.join(PII_CLASSES)})")
        elif pii not in PII_CLASSES:
            problems.append(f"{fwhere}: tag 'pii'={pii!r} is not one of {', '.join(PII_CLASSES)}")
    return problems


def check_repo(repo_contents) -> list[str]:
    """Every policy problem in a parsed Feast repo (``RepoContents``)."""
    problems: list[str] = []
    for view in [
        *repo_contents.feature_views,
        *repo_contents.stream_feature_views,
        *repo_contents.on_demand_feature_views,
    ]:
        problems.extend(check_view(view))
    return problems
