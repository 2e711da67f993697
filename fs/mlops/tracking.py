"""MLflow, when it is there: the optional ``fs-platform[mlflow]`` extra (``mlflow-skinny``).

MLflow is used when it is installed and a tracking URI is set: ``mlflow.tracking_uri`` in
feature_store.yaml (Feast's own ``mlflow:`` section; an env overlay may set it per environment), else
``MLFLOW_TRACKING_URI``. Without either, nothing is sent anywhere: training sets keep their lineage
beside the saved dataset only, and ``fs promote`` skips the model-version check (it says so).
A local file store (``file:///...``) also needs ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow 3 keeps it
in maintenance mode and refuses it otherwise).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fs_platform.errors import ConfigError
from fs_platform.scrub import summary

log = logging.getLogger(__name__)

FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


def tracking_uri(repo_config) -> str | None:
    """The configured tracking URI (feature_store.yaml ``mlflow.tracking_uri``, else the environment)."""
    settings = getattr(repo_config, "mlflow", None)
    configured = getattr(settings, "tracking_uri", None)
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or None


def mlflow_for(repo_config) -> Any | None:
    """The ``mlflow`` module pointed at the configured tracking URI, or None (not installed, or no URI)."""
    uri = tracking_uri(repo_config)
    if not uri:
        return None
    try:
        import mlflow
    except ImportError:
        log.info("MLflow tracking URI set but mlflow is not installed (pip install 'fs-platform[mlflow]')")
        return None
    mlflow.set_tracking_uri(uri)
    return mlflow


def error(err: Exception, repo_config) -> ConfigError:
    """An MLflow failure as one line naming the store (never its credentials) and the usual fix."""
    uri = tracking_uri(repo_config) or ""
    where = uri.split("://", 1)[0] + "://..." if "://" in uri else "(a local path)"
    hint = "check the tracking server and MLFLOW_TRACKING_URI"
    if uri.startswith("file:") or "://" not in uri:
        hint = f"a local file store also needs {FILE_STORE_ENV}=true"
    return ConfigError(f"MLflow tracking store {where} failed: {summary(err)}", hint=hint)
