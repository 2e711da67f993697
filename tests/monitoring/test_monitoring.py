"""Dashboards and alerts as code (fs_platform.monitoring, issue #18.5).

- Every PromQL expression (dashboard panels and alert rules) names only metrics the platform really
  exports, with label matchers on labels those metrics have. The exported names come from the real
  registries: every module of every listed package is imported and ``REGISTRY`` says which sample names
  it would expose; parity's per-run registry is read back from a textfile ``write_prometheus`` wrote.
- Every exported metric appears on some dashboard.
- The exported rule file passes ``promtool check rules`` and ``promtool test rules``
  (``alerts_test.yaml``: each alert fires on synthetic series breaching its SLA, stays silent on
  healthy ones), and every dashboard expression parses (``promtool check rules`` on recording rules).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from fs_platform.monitoring import ALERTS_FILE, export
from fs_platform.monitoring.dashboards import DASHBOARDS, expressions
from fs_platform.monitoring.panels import RATE

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Labels Prometheus itself adds to every scraped series (and ``le`` on histogram buckets).
TARGET_LABELS = {"job", "instance"}

# -- a small PromQL reader: the metric selectors of an expression --------------------------------------
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?")


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) for every vector selector in ``expr``."""
    text = expr.replace(RATE, "5m")
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # string literals
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    text = _GROUPING.sub("", text)  # by/on/group_left ... with their label lists
    found = []
    for name, matchers, call in _SELECTOR.findall(text):
        if call or name in _KEYWORDS:
            continue
        found.append((name, set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers or ""))))
    return found


def test_the_selector_reader_finds_metrics_and_matchers():
    expr = (
        'sum by (topic, le) (rate(a_bucket{topic="x", le!="+Inf"}[5m])) / on (view) group_left '
        'max by (view) (b) > bool 0.99 or vector(1) and time() - c_total{job=~"fs.*"} offset 5m'
    )
    assert selectors(expr) == [("a_bucket", {"topic", "le"}), ("b", set()), ("c_total", {"job"})]


# -- what the platform exports ------------------------------------------------------------------------
def _import_every_module() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in packages:
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__, package + "."):
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as e:  # an optional extra that is not installed
                if (e.name or "").startswith("fs_platform"):
                    raise


def _parity_textfile(tmp: Path) -> str:
    from fs_platform.parity.report import FeatureStats, ParityReport, Timings, ViewReport, write_prometheus

    view = ViewReport(
        "customer_profile", 10, 10, None, 0.0, 3, [FeatureStats("avg_amount_30d", "float", False, 10)]
    )
    report = ParityReport(datetime.now(UTC), 0, 10, 0.01, [view], Timings(0, 0, 0, 0, 0))
    path = tmp / "parity.prom"
    write_prometheus(report, str(path))
    return path.read_text()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, set[str]]:
    """Every sample name the platform exposes -> the label names its series carry."""
    from prometheus_client.parser import text_string_to_metric_families

    from fs_platform.observability import REGISTRY

    _import_every_module()
    names: dict[str, set[str]] = {}
    for collector, samples in REGISTRY._collector_to_names.items():  # the registry's own name map
        labels = set(getattr(collector, "_labelnames", ()))
        for sample in samples:
            names[sample] = labels | ({"le"} if sample.endswith("_bucket") else set())
    for family in text_string_to_metric_families(_parity_textfile(tmp_path_factory.mktemp("parity"))):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _all_expressions() -> list[tuple[str, str]]:
    found = [(f"dashboard {d.uid}", e) for d in DASHBOARDS for e in expressions(d)]
    rules = yaml.safe_load((ROOT / "fs/monitoring/alerts.yaml").read_text())
    found += [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    return found


def test_every_expression_uses_exported_metrics_and_their_labels(exported):
    assert "fs_ingest_consumer_lag" in exported and "fs_parity_breach" in exported  # the collection works
    unknown, bad_labels = [], []
    for where, expr in _all_expressions():
        found = selectors(expr)
        assert found, f"{where}: no metric in {expr}"
        for name, labels in found:
            if name not in exported:
                unknown.append(f"{where}: {name}")
            elif extra := labels - exported[name] - TARGET_LABELS:
                bad_labels.append(f"{where}: {name} has no label {sorted(extra)}")
    assert not unknown, unknown
    assert not bad_labels, bad_labels


def test_every_exported_metric_is_on_a_dashboard(exported):
    used = {name for d in DASHBOARDS for e in expressions(d) for name, _ in selectors(e)}
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in used}
    assert families - shown == set()


def test_export_writes_grafana_models_and_the_rule_file(tmp_path):
    written = export(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        [f"grafana/{d.uid}.json" for d in DASHBOARDS] + [f"prometheus/{ALERTS_FILE}"]
    )
    for d in DASHBOARDS:
        model = json.loads((tmp_path / "grafana" / f"{d.uid}.json").read_text())
        assert model["uid"] == d.uid and model["templating"]["list"][0]["type"] == "datasource"
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids))
        for p in model["panels"]:
            pos = p["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (d.uid, p["title"])
            for t in p.get("targets", []):
                assert t["expr"] and t["datasource"]["uid"] == "${datasource}"
    exported_rules = (tmp_path / "prometheus" / ALERTS_FILE).read_text()
    assert exported_rules == (ROOT / "fs/monitoring/alerts.yaml").read_text()


def test_the_cli_exports_and_refuses_a_file_as_the_directory(tmp_path):
    from typer.testing import CliRunner

    from fs_platform.cli.main import app

    runner = CliRunner()
    done = runner.invoke(app, ["observability", "export", str(tmp_path / "out"), "--json"])
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.stdout)["written"]) == len(DASHBOARDS) + 1
    (tmp_path / "file").write_text("")
    refused = subprocess.run(
        [sys.executable, "-m", "fs_platform.cli.main", "observability", "export", str(tmp_path / "file")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        refused.returncode == 2
        and "is not a directory" in refused.stderr
        and "Traceback" not in refused.stderr
    )


# -- promtool -----------------------------------------------------------------------------------------
def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing on CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_alert_rules_pass_promtool_check_and_unit_tests(tmp_path):
    export(tmp_path)
    prom = tmp_path / "prometheus"
    check = _run("check", "rules", ALERTS_FILE, cwd=prom)
    assert check.returncode == 0, check.stdout + check.stderr
    shutil.copy(HERE / "alerts_test.yaml", prom)
    test = _run("test", "rules", "alerts_test.yaml", cwd=prom)
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_alert_has_a_firing_unit_test():
    rules = yaml.safe_load((ROOT / "fs/monitoring/alerts.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    cases = yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
    firing = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t.get("exp_alerts")}
    silent = {t["alertname"] for c in cases for t in c["alert_rule_test"] if not t.get("exp_alerts")}
    assert alerts - firing == set() and alerts - silent == set()


def test_every_dashboard_expression_parses(tmp_path):
    rules = [
        {"record": f"fs:dashboard_check:{i}", "expr": expr.replace(RATE, "5m")}
        for i, (_, expr) in enumerate(e for e in _all_expressions() if e[0].startswith("dashboard"))
    ]
    (tmp_path / "dashboards.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]})
    )
    check = _run("check", "rules", "dashboards.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
