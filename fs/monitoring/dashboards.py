"""The Grafana dashboards, one module each (``dashboard_*.py``), described with ``panels`` and
rendered to Grafana's JSON model by ``grafana.render``."""

from __future__ import annotations

from fs_platform.monitoring.dashboard_freshness import FRESHNESS
from fs_platform.monitoring.dashboard_ingest import INGEST
from fs_platform.monitoring.dashboard_jobs import JOBS
from fs_platform.monitoring.dashboard_parity import PARITY
from fs_platform.monitoring.dashboard_quality import QUALITY
from fs_platform.monitoring.dashboard_serving import SERVING
from fs_platform.monitoring.panels import Dashboard

DASHBOARDS = (SERVING, INGEST, JOBS, PARITY, QUALITY, FRESHNESS)


def expressions(dashboard: Dashboard) -> list[str]:
    return [query.expr for row in dashboard.rows for panel in row.panels for query in panel.queries]
