"""The feature catalog: who owns each entity, view and feature, what it means, whether it is
personal data, how fresh it must be — read from the registry, rendered as Markdown pages.

View kinds: ``batch``, ``stream`` (fed by a push source), ``aggregation`` (window features computed
from raw events, docs/aggregations.md; each feature's description names its window and tile) and
``on_demand``. An aggregation view's spec travels in its tag ``fs.aggregation`` (machine-readable
JSON); the catalog leaves that tag out of the view's tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from fs_platform.aggregation.spec import TAG as AGGREGATION_TAG
from fs_platform.aggregation.spec import is_aggregation
from fs_platform.metadata import entity_pii_class, field_description, is_sensitive_class, pii_class
from fs_platform.views import view_not_found


@dataclass(frozen=True)
class FeatureInfo:
    name: str
    dtype: str
    description: str
    pii: str
    tags: dict[str, str]


@dataclass(frozen=True)
class EntityInfo:
    name: str
    join_keys: list[str]
    value_type: str
    owner: str
    description: str
    pii: str
    tags: dict[str, str]


@dataclass(frozen=True)
class ViewInfo:
    name: str
    kind: str  # batch | stream | aggregation | on_demand
    owner: str
    team: str
    tier: str
    description: str
    freshness_sla: str | None
    ttl_seconds: float | None
    source: str
    entities: list[str]
    online: bool
    tags: dict[str, str]
    features: list[FeatureInfo]

    @property
    def pii_features(self) -> list[str]:
        return [f.name for f in self.features if is_sensitive_class(f.pii)]


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    owner: str
    description: str
    tags: dict[str, str]
    features: list[str]  # view:feature
    pii_features: list[str]


@dataclass
class Catalog:
    project: str
    entities: list[EntityInfo] = field(default_factory=list)
    views: list[ViewInfo] = field(default_factory=list)
    services: list[ServiceInfo] = field(default_factory=list)

    def view(self, name: str) -> ViewInfo:
        for v in self.views:
            if v.name == name:
                return v
        raise view_not_found([name], [v.name for v in self.views])


def _features(view) -> list[FeatureInfo]:
    return [
        FeatureInfo(
            f.name,
            str(f.dtype),
            field_description(f, view),
            pii_class(f, view) or "unclassified",
            dict(f.tags or {}),
        )
        for f in view.features
    ]


def _source(view) -> str:
    if getattr(view, "source_request_sources", None) is not None:  # on-demand
        inputs = [*view.source_feature_view_projections, *view.source_request_sources]
        return "on-demand from " + ", ".join(sorted(inputs))
    parts = []
    for src in (getattr(view, "stream_source", None), view.batch_source):
        if src is None:
            continue
        where = getattr(src, "path", None) or getattr(src, "table", None) or ""
        parts.append(f"{type(src).__name__} {src.name}" + (f" ({where})" if where else ""))
    return " + ".join(parts)


def _view_info(view, kind: str) -> ViewInfo:
    tags = {k: v for k, v in (view.tags or {}).items() if k != AGGREGATION_TAG}
    ttl = getattr(view, "ttl", None)
    return ViewInfo(
        name=view.name,
        kind=kind,
        owner=view.owner or "",
        team=tags.get("team", ""),
        tier=tags.get("tier", ""),
        description=view.description or "",
        freshness_sla=tags.get("freshness_sla"),
        ttl_seconds=ttl.total_seconds() if isinstance(ttl, timedelta) and ttl else None,
        source=_source(view),
        entities=list(getattr(view, "entities", []) or []),
        online=bool(getattr(view, "online", True)),
        tags=tags,
        features=_features(view),
    )


def build_catalog(store) -> Catalog:
    """Everything registered in the store's project, sorted by name."""
    views = {}
    for v in store.list_all_feature_views():
        # A view fed by a push/stream source is "stream" even when it is a plain FeatureView.
        if hasattr(v, "source_request_sources"):
            kind = "on_demand"
        elif is_aggregation(v):
            kind = "aggregation"
        else:
            kind = "stream" if getattr(v, "stream_source", None) else "batch"
        views[v.name] = _view_info(v, kind)
    sensitive = {(v.name, f) for v in views.values() for f in v.pii_features}
    services = []
    for s in store.list_feature_services():
        refs = [(p.name, f.name) for p in s.feature_view_projections for f in p.features]
        services.append(
            ServiceInfo(
                name=s.name,
                owner=s.owner or "",
                description=s.description or "",
                tags=dict(s.tags or {}),
                features=[f"{v}:{f}" for v, f in refs],
                pii_features=[f"{v}:{f}" for v, f in refs if (v, f) in sensitive],
            )
        )
    entities = [
        EntityInfo(
            e.name,
            [e.join_key],
            e.value_type.name,
            e.owner or "",
            e.description or "",
            entity_pii_class(e) or "unclassified",
            dict(e.tags or {}),
        )
        for e in store.list_entities()
    ]
    return Catalog(
        project=store.project,
        entities=sorted(entities, key=lambda e: e.name),
        views=sorted(views.values(), key=lambda v: v.name),
        services=sorted(services, key=lambda s: s.name),
    )


# -- Markdown pages -----------------------------------------------------------------------------
_GENERATED = "<!-- generated by `fs catalog docs` from the registry; do not edit -->"


def _ttl(seconds: float | None) -> str:
    """Compact duration: 365d, 36h, 15m (the largest unit that divides it)."""
    if not seconds:
        return "none"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _cell(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def view_page(view: ViewInfo) -> str:
    lines = [
        _GENERATED,
        f"# {view.name}",
        "",
        _cell(view.description),
        "",
        "| | |",
        "|---|---|",
        f"| kind | {view.kind} |",
        f"| owner | {view.owner} |",
        f"| team | {view.team} |",
        f"| tier | {view.tier} |",
        f"| freshness SLA | {view.freshness_sla or 'none'} |",
        f"| TTL | {_ttl(view.ttl_seconds)} |",
        f"| entities | {', '.join(view.entities) or '-'} |",
        f"| source | {_cell(view.source)} |",
        f"| online | {'yes' if view.online else 'no'} |",
        f"| PII features | {', '.join(view.pii_features) or 'none'} |",
        f"| tags | {_cell(', '.join(f'{k}={v}' for k, v in sorted(view.tags.items())))} |",
        "",
        "## Features",
        "",
        "| feature | type | PII class | description |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{f.name}` | {f.dtype} | {f.pii} | {_cell(f.description)} |" for f in view.features]
    return "\n".join(lines) + "\n"


def index_page(catalog: Catalog) -> str:
    lines = [
        _GENERATED,
        f"# Feature catalog — project `{catalog.project}`",
        "",
        "## Entities",
        "",
        "| entity | join keys | type | owner | PII class | description |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {e.name} | {', '.join(e.join_keys)} | {e.value_type} | {e.owner} | {e.pii} | "
        f"{_cell(e.description)} |"
        for e in catalog.entities
    ]
    lines += [
        "",
        "## Feature views",
        "",
        "| view | kind | team | tier | owner | freshness SLA | TTL | PII features | description |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| [{v.name}]({v.name}.md) | {v.kind} | {v.team} | {v.tier} | {v.owner} | "
        f"{v.freshness_sla or '-'} | {_ttl(v.ttl_seconds)} | {', '.join(v.pii_features) or '-'} | "
        f"{_cell(v.description)} |"
        for v in catalog.views
    ]
    lines += [
        "",
        "## Feature services",
        "",
        "| service | owner | features | PII features | description |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.name} | {s.owner} | {len(s.features)} | {', '.join(s.pii_features) or '-'} | "
        f"{_cell(s.description)} |"
        for s in catalog.services
    ]
    return "\n".join(lines) + "\n"


def catalog_pages(catalog: Catalog) -> dict[str, str]:
    """File name -> Markdown of every page ``write_docs`` writes."""
    return {"index.md": index_page(catalog), **{f"{v.name}.md": view_page(v) for v in catalog.views}}


def stale_pages(pages: dict[str, str], out_dir: str | Path) -> list[str]:
    """Generated pages in ``out_dir`` of views no longer registered (``write_docs`` removes them)."""
    return sorted(
        p.name
        for p in Path(out_dir).glob("*.md")
        if p.name not in pages and p.read_text().startswith(_GENERATED)
    )


def write_docs(catalog: Catalog, out_dir: str | Path) -> list[Path]:
    """Write ``index.md`` and one page per view; pages of views no longer registered are removed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = catalog_pages(catalog)
    for stale in stale_pages(pages, out):
        (out / stale).unlink()
    written = []
    for name, text in pages.items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written
