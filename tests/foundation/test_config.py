import pytest

from fs_platform.config import load_config, raw_config, resolve_repo
from fs_platform.errors import ConfigError


def test_dev_config_uses_file_registry_and_platform_stores(example_repo):
    config = load_config(example_repo)
    assert config.project == "payments"
    assert config.registry.registry_type == "file"
    assert config.offline_store.type == "fs_platform.plugins.delta.offline_store.DeltaOfflineStore"
    assert str(config.repo_path) == str(example_repo)


def test_staging_overlay_takes_urls_from_environment(example_repo, monkeypatch):
    monkeypatch.setenv("FS_REGISTRY_URL", "postgresql+psycopg://u:s3cret@db.internal:5432/reg")
    monkeypatch.setenv("FS_REDIS_URL", "redis://cache.internal:6379")
    data = raw_config(example_repo, "staging")
    assert data["registry"]["registry_type"] == "sql"
    assert data["registry"]["path"] == "postgresql+psycopg://u:s3cret@db.internal:5432/reg"
    # the overlay is merged, not substituted: base keys survive
    assert data["project"] == "payments"
    assert data["offline_store"]["type"].endswith("DeltaOfflineStore")


def test_an_env_prefixed_variable_wins_for_that_env_only(example_repo, monkeypatch):
    """``FS_PROD__FS_REGISTRY_URL`` is prod's ``FS_REGISTRY_URL``: one process (fs promote) reaches both."""
    monkeypatch.setenv("FS_REGISTRY_URL", "postgresql+psycopg://ci@db:5432/staging_registry")
    monkeypatch.setenv("FS_PROD__FS_REGISTRY_URL", "postgresql+psycopg://ci@db:5432/prod_registry")
    monkeypatch.setenv("FS_REDIS_URL", "redis://cache:6379")
    assert raw_config(example_repo, "prod")["registry"]["path"].endswith("/prod_registry")
    assert raw_config(example_repo, "staging")["registry"]["path"].endswith("/staging_registry")


def test_missing_environment_variable_is_named_but_never_valued(example_repo, monkeypatch):
    monkeypatch.delenv("FS_REGISTRY_URL", raising=False)
    monkeypatch.setenv("FS_REDIS_URL", "redis://:topsecret@cache:6379")
    with pytest.raises(ConfigError) as err:
        raw_config(example_repo, "staging")
    assert "FS_REGISTRY_URL" in str(err.value)
    assert "topsecret" not in str(err.value)


def test_unknown_env_lists_the_known_ones(example_repo):
    with pytest.raises(ConfigError, match=r"unknown environment 'qa'.*dev, prod, staging"):
        raw_config(example_repo, "qa")


def test_malformed_yaml_names_file_and_line(example_repo):
    (example_repo / "feature_store.yaml").write_text("project: payments\nregistry: [unclosed\n")
    with pytest.raises(ConfigError, match=r"malformed YAML in .*feature_store.yaml:\d+"):
        load_config(example_repo)


def test_missing_repo_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no feature repo at"):
        resolve_repo(tmp_path / "nowhere")


def test_repo_from_environment_variable(example_repo, monkeypatch):
    monkeypatch.setenv("FS_REPO", str(example_repo))
    assert resolve_repo(None) == example_repo.resolve()


def test_old_type_path_names_the_new_one(example_repo):
    yaml_path = example_repo / "feature_store.yaml"
    old = yaml_path.read_text().replace("type: fs_platform.plugins.redis_store", "type: plugins.redis_store")
    assert old != yaml_path.read_text()
    yaml_path.write_text(old)
    with pytest.raises(ConfigError) as err:
        load_config(example_repo)
    assert (
        "online_store.type 'plugins.redis_store.online_store.RedisOnlineStore' uses the old import path"
        in str(err.value)
    )
    assert "fs_platform.plugins.redis_store.online_store.RedisOnlineStore" in err.value.hint
