"""Loading a feature repo's configuration for one environment.

``feature_store.yaml`` is the dev configuration. ``--env staging|prod`` deep-merges
``envs/<env>.yaml`` over it. ``${VAR}`` references are filled from the environment (``FS_<ENV>__VAR``
wins over ``VAR`` for that environment); a missing variable is an error that names the variable (its
value is never printed).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from fs_platform.errors import ConfigError

DEFAULT_ENV = "dev"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def resolve_repo(repo: str | os.PathLike | None) -> Path:
    """The repo folder: the argument, else ``$FS_REPO``, else ``./feature_repo``."""
    path = Path(repo or os.environ.get("FS_REPO") or "feature_repo").expanduser().resolve()
    if not (path / "feature_store.yaml").is_file():
        raise ConfigError(
            f"no feature repo at {path} (feature_store.yaml not found)",
            hint="pass --repo PATH or set FS_REPO",
        )
    return path


def available_envs(repo: Path) -> list[str]:
    return [DEFAULT_ENV] + sorted(p.stem for p in (repo / "envs").glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"malformed YAML in {where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"malformed {path}: expected a mapping at the top level")
    return data


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def env_variables(env: str) -> dict[str, str]:
    """The variables ``env``'s configuration is filled from: the environment, where ``FS_<ENV>__NAME``
    (e.g. ``FS_PROD__FS_REGISTRY_URL``) overrides ``NAME``, so that one process (``fs promote``) can
    reach two environments' services."""
    prefix = f"FS_{env.upper().replace('-', '_')}__"
    return {**os.environ, **{k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix)}}


def expand_env(value: Any, source: Path, variables: dict[str, str] | None = None) -> Any:
    variables = os.environ if variables is None else variables
    if isinstance(value, dict):
        return {k: expand_env(v, source, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, source, variables) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set (referenced by {source})",
            hint=f"export {name}=... before running this command",
        )

    return _VAR.sub(sub, value)


def raw_config(repo: Path, env: str = DEFAULT_ENV) -> dict[str, Any]:
    """The merged, variable-expanded configuration dict for ``env``."""
    data = read_yaml(repo / "feature_store.yaml")
    source = repo / "feature_store.yaml"
    if env != DEFAULT_ENV:
        overlay = repo / "envs" / f"{env}.yaml"
        if not overlay.is_file():
            raise ConfigError(
                f"unknown environment {env!r} for repo {repo}",
                hint=f"choose one of: {', '.join(available_envs(repo))}",
            )
        data = merge(data, read_yaml(overlay))
        source = overlay
    return expand_env(data, source, env_variables(env))


_OLD_ROOTS = ("plugins.", "fs.", "parity.", "backfill.", "cli.")


def _refuse_old_type_paths(data: dict[str, Any], repo: Path) -> None:
    """Store and engine types moved under the ``fs_platform`` namespace: name the fix, not an import error."""
    for section in ("online_store", "offline_store", "batch_engine"):
        kind = (data.get(section) or {}).get("type") if isinstance(data.get(section), dict) else None
        if isinstance(kind, str) and kind.startswith(_OLD_ROOTS):
            raise ConfigError(
                f"{repo}/feature_store.yaml: {section}.type {kind!r} uses the old import path",
                hint=f"fs installs under one namespace now: set {section}.type: fs_platform.{kind}",
            )


def first_error(e) -> tuple[str, str]:
    """(field path, message) of a pydantic ``ValidationError``'s first problem: what every settings loader
    puts in its one-line ``ConfigError``."""
    first = e.errors()[0]
    return ".".join(str(p) for p in first.get("loc", ())), first.get("msg", "")


def load_config(repo: Path, env: str = DEFAULT_ENV):
    """A Feast ``RepoConfig`` for ``repo`` in environment ``env``."""
    from feast.repo_config import RepoConfig
    from pydantic import ValidationError

    data = raw_config(repo, env)
    _refuse_old_type_paths(data, repo)
    try:
        config = RepoConfig(**data)
    except ValidationError as e:
        where, msg = first_error(e)
        raise ConfigError(
            f"invalid configuration for env {env!r} in {repo}/feature_store.yaml: {where}: "
            f"{msg.removeprefix('Value error, ')}"
        ) from None
    except Exception as e:  # Feast raises plain errors for unknown store types etc.
        raise ConfigError(f"invalid configuration for env {env!r} in {repo}: {e}") from None
    config.repo_path = repo
    return config
