"""The Flink engine's own Python environment: where it is, how to create it, and the connector check.

``fs stream install-flink`` (``install``) creates it beside the project's ``.venv``: PyFlink from
``requirements.txt`` (and ``overrides.txt``), then the Kafka connector wheel pinned by hash
(``connector.txt``, ``--no-deps --require-hashes``) into its own folder, then this project without
dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from fs_platform.errors import ConfigError

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
CONNECTOR = HERE / "connector.txt"
OVERRIDES = HERE / "overrides.txt"
CONNECTOR_DIR = "flink-connector"  # under the environment's prefix
CONNECTOR_JARS = (
    "flink-connector-kafka.jar",
    "kafka-clients.jar",
    "lz4-java.jar",
    "snappy-java.jar",
    "zstd-jni.jar",
)
EXPECTED_MANIFEST = {
    "Implementation-Title": "Flink : Connectors : Kafka",
    "Implementation-Version": "4.0.1-2.0",
    "Implementation-Vendor-Id": "org.apache.flink",
}


class FlinkNotInstalled(ConfigError):
    """The Flink environment is missing or incomplete."""


def project_root() -> Path:
    """The checkout this package is installed from (editable install), else the working directory."""
    root = HERE.parents[1]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def default_env() -> Path:
    return project_root() / ".venv-flink"


def flink_python(configured: str | None = None) -> Path:
    """The Flink environment's interpreter: ``configured``, ``FS_FLINK_PYTHON``, else ``.venv-flink``."""
    return Path(configured or os.environ.get("FS_FLINK_PYTHON") or default_env() / "bin" / "python")


def install_hint(env: Path | None = None) -> str:
    target = env or default_env()
    return (
        f"run `fs stream install-flink` (creates {target}: apache-flink 2.0.2 and the hash-pinned Kafka "
        "connector, ~1.8 GB, ~3 minutes; needs Java 17), or point FS_FLINK_PYTHON at such an environment"
    )


def require_env(python: Path) -> None:
    """``FlinkNotInstalled`` with the exact way to install unless ``python`` runs PyFlink 2.0.2."""
    if not python.is_file():
        raise FlinkNotInstalled(f"the Flink engine is not installed (no {python})", hint=install_hint())
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('apache-flink'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode or probe.stdout.strip() != "2.0.2":
        raise FlinkNotInstalled(f"{python} has no apache-flink 2.0.2", hint=install_hint())


def connector_jars(prefix: Path | None = None) -> list[Path]:
    """The connector jars of the environment at ``prefix`` (default: this interpreter's), after checking
    the Kafka connector's manifest is the Apache-built 4.0.1-2.0."""
    lib = Path(prefix or sys.prefix) / CONNECTOR_DIR / "pyflink" / "lib"
    jars = [lib / j for j in CONNECTOR_JARS]
    missing = [j.name for j in jars if not j.is_file()]
    if missing:
        raise FlinkNotInstalled(
            f"the Kafka connector is not installed ({', '.join(missing)} missing in {lib})",
            hint=install_hint(),
        )
    with zipfile.ZipFile(jars[0]) as z:
        text = z.read("META-INF/MANIFEST.MF").decode()
    manifest = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    wrong = {k: manifest.get(k) for k, v in EXPECTED_MANIFEST.items() if manifest.get(k) != v}
    if wrong:
        raise FlinkNotInstalled(
            f"{jars[0]} is not the expected Apache flink-connector-kafka 4.0.1-2.0 (manifest: {wrong})",
            hint=install_hint(),
        )
    return jars


def install(env: Path | None = None, quiet: bool = True) -> Path:
    """Create (or complete) the Flink environment; returns its interpreter."""
    env = env or default_env()
    q = ["-q"] if quiet else []
    python = env / "bin" / "python"
    steps = []
    if not python.is_file():
        steps.append(
            [sys.executable if sys.version_info[:2] == (3, 11) else "python3.11", "-m", "venv", str(env)]
        )
    pip = [str(python), "-m", "pip", *q, "install", "--disable-pip-version-check"]
    steps += [
        [str(python), "-m", "pip", *q, "install", "--disable-pip-version-check", "--upgrade", "pip"],
        [*pip, "-r", str(REQUIREMENTS)],
        [*pip, "--no-deps", "-r", str(OVERRIDES)],
        [
            *pip,
            "--no-deps",
            "--require-hashes",
            "--upgrade",
            "--target",
            str(env / CONNECTOR_DIR),
            "-r",
            str(CONNECTOR),
        ],
        [*pip, "--no-deps", "-e", str(project_root())],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=quiet, text=True)
        if done.returncode:
            tail = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise FlinkNotInstalled(
                f"installing the Flink environment failed at `{' '.join(cmd[:6])} ...`: "
                f"{tail[0] if tail else 'see the output above'}"
            )
    connector_jars(env)
    return python
