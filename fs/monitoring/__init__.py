"""Dashboards and alerts as code for the platform's metrics (``docs/observability.md``).

- ``dashboards.py``: the Grafana dashboards (``dashboard_*.py``), described in Python (``panels.py``) and
  rendered to Grafana's JSON model (``grafana.py``).
- ``alerts.yaml``: the Prometheus alerting rules for the SLAs (kept as the rule file Prometheus loads).

``export(dest)`` writes both (``fs observability export DIR``): ``DIR/grafana/*.json`` for Grafana's
dashboard provisioning or import, ``DIR/prometheus/fs-alerts.yaml`` for Prometheus' ``rule_files``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from fs_platform.errors import InvalidArgument
from fs_platform.monitoring.dashboards import DASHBOARDS
from fs_platform.monitoring.grafana import render

ALERTS_FILE = "fs-alerts.yaml"


def alert_rules() -> str:
    """The Prometheus rule file, as shipped."""
    return resources.files(__package__).joinpath("alerts.yaml").read_text()


def dashboards() -> dict[str, dict]:
    """Every dashboard's Grafana JSON model, by file name."""
    return {f"{d.uid}.json": render(d) for d in DASHBOARDS}


def export(dest: str | Path) -> list[Path]:
    """Write the dashboards and the alert rules under ``dest``; the files written."""
    root = Path(dest)
    if root.exists() and not root.is_dir():
        raise InvalidArgument(f"{root} exists and is not a directory", hint="pass a directory to write into")
    written = []
    grafana, prometheus = root / "grafana", root / "prometheus"
    grafana.mkdir(parents=True, exist_ok=True)
    prometheus.mkdir(parents=True, exist_ok=True)
    for name, model in dashboards().items():
        path = grafana / name
        path.write_text(json.dumps(model, indent=2) + "\n")
        written.append(path)
    path = prometheus / ALERTS_FILE
    path.write_text(alert_rules())
    written.append(path)
    return written
