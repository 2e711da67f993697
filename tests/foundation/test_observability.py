"""FS_OTEL_EXPORTER=console prints spans (docs/configuration.md); an exporter that cannot be used is a
warning, never silence (issue #14.11). Each case runs in a fresh interpreter: the tracer provider is
process-global and set once."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
{prelude}
from fs_platform.observability import span
with span("fs.test.op", view="customer_profile"):
    pass
"""


def _run(exporter: str, prelude: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "FS_OTEL_EXPORTER": exporter}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(prelude=prelude)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_console_exporter_prints_spans():
    proc = _run("console")
    assert proc.returncode == 0, proc.stderr
    assert '"name": "fs.test.op"' in proc.stdout and '"view": "customer_profile"' in proc.stdout


def test_console_exporter_without_the_sdk_is_a_warning():
    # Hide the SDK as if it were not installed.
    proc = _run("console", prelude="sys.modules['opentelemetry.sdk'] = None")
    assert proc.returncode == 0, proc.stderr
    assert "OpenTelemetry SDK cannot be imported" in proc.stderr and "fs.test.op" not in proc.stdout


def test_unknown_exporter_is_a_warning():
    proc = _run("otlpp")
    assert proc.returncode == 0 and "FS_OTEL_EXPORTER=otlpp is not known" in proc.stderr
