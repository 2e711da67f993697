"""Rendering a dashboard description (``fs_platform.monitoring.panels``) to Grafana's JSON model, with a
``datasource`` variable (any Prometheus data source), so the same JSON imports anywhere."""

from __future__ import annotations

from fs_platform.monitoring.panels import Dashboard, Panel

_DS = {"type": "prometheus", "uid": "${datasource}"}
_WIDTH = 24


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict:
    steps = [{"color": "green", "value": None}] + [
        {"color": "orange" if i < len(panel.thresholds) - 1 else "red", "value": v}
        for i, v in enumerate(panel.thresholds)
    ]
    model = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _DS,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": _DS,
                "expr": qu.expr,
                "legendFormat": qu.legend or "__auto",
                "instant": panel.kind == "table",
                "range": panel.kind != "table",
            }
            for i, qu in enumerate(panel.queries)
        ],
    }
    if panel.kind == "stat":
        model["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
        }
    return model


def render(dashboard: Dashboard) -> dict:
    """Grafana's dashboard JSON model (schema 39): rows as collapsible row panels, panels laid out
    left to right in a 24-column grid."""
    panels, pid, y = [], 1, 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": _WIDTH, "x": 0, "y": y},
            }
        )
        pid, y, x = pid + 1, y + 1, 0
        for panel in row.panels:
            if x + panel.width > _WIDTH:
                x, y = 0, y + 8
            panels.append(_panel(panel, pid, x, y))
            pid, x = pid + 1, x + panel.width
        y += 8
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["fs"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }
