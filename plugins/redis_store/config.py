"""The settings of the fs Redis store's ``online_store:`` block in feature_store.yaml (docs/online_store.md).
Feast uses them as ``online_store.RedisOnlineStoreConfig``, declared beside the store class."""

from __future__ import annotations

from typing import Literal

from feast.repo_config import FeastConfigBaseModel
from pydantic import Field, StrictStr, field_validator

from fs_platform.plugins.redis_store.keys import check_name


class RedisStoreSettings(FeastConfigBaseModel):
    """Online store config for the fs Redis store."""

    type: Literal["fs_platform.plugins.redis_store.online_store.RedisOnlineStore"] = (
        "fs_platform.plugins.redis_store.online_store.RedisOnlineStore"
    )
    """Online store type selector."""

    url: StrictStr | None = None
    """``redis://`` or ``rediss://`` (TLS) URL with db number; ``${VAR}`` is expanded by Feast.
    In cluster mode a startup node, in sentinel mode a sentinel. Unset: embedded Valkey (dev)."""

    mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    """Deployment: a single server (or a proxy), Redis Cluster, or Sentinel-managed primary."""

    extra_nodes: list[StrictStr] = Field(default_factory=list)
    """More ``host:port`` startup nodes (cluster) or sentinels (sentinel)."""

    sentinel_master: StrictStr = "mymaster"
    """Sentinel service name of the primary."""

    username_env: StrictStr | None = None
    """Name of the environment variable holding the ACL username (overrides the URL's)."""

    password_env: StrictStr | None = None
    """Name of the environment variable holding the password (overrides the URL's)."""

    key_prefix: StrictStr = "fs"
    """Tenant prefix of every key: ``<key_prefix>:<project>:...``; letters, digits, ``_``, ``-``."""

    embedded_dir: StrictStr | None = None
    """Data directory of the embedded Valkey; default ``<repo>/data/valkey``."""

    max_connections: int = 64
    """Connection pool size per client (per node in cluster mode)."""

    socket_timeout_s: float = 1.0
    """Per-command socket timeout."""

    connect_timeout_s: float = 1.0
    """TCP connect timeout."""

    health_check_interval_s: int = 30
    """PING idle connections older than this before use (0 disables)."""

    retry_attempts: int = 3
    """Retries of a command after a connection error or timeout (all commands are idempotent)."""

    retry_backoff_base_s: float = 0.01
    """First retry delay; doubles per attempt, with jitter."""

    retry_backoff_cap_s: float = 0.5
    """Maximum retry delay."""

    write_batch_size: int = 200
    """Rows per write-script call (one pipeline carries all calls of a batch). Throughput is flat
    from ~100 to ~1000 rows; smaller calls block the server for less time (~1.5 ms at 200)."""

    delete_scan_count: int = 1000
    """SCAN COUNT hint when deleting a view's or project's keys (bounds the work per server call)."""

    key_hash_secret_env: StrictStr | None = None
    """Name of the environment variable holding this tenant's key hash secret. Set: key names carry a
    keyed hash of the entity key instead of its ids (``SCAN`` then reveals no entity id). Changing
    it (or turning it on) makes existing keys unreachable: materialize again."""

    key_ttl_seconds: int | None = Field(default=None, ge=0)
    """Feast's setting, with Feast's meaning: every row key expires this many seconds after it was
    written (0/unset: never), whatever the view. With a view ttl the key expires at the earlier of
    the two. Aggregation views' tile keys keep their own expiry (their longest window)."""

    enforce_view_ttl: bool = True
    """Hide values older than their view's ``ttl`` at read time (status OUTSIDE_MAX_AGE, the offline
    meaning) and expire their keys then. ``false``: Feast's behaviour for teams migrating from it, a
    stored value is served whatever its age until it is overwritten or its key expires by
    ``key_ttl_seconds``; rows older than the ttl are written, not skipped. Parity checks keep the ttl."""

    @field_validator("key_prefix")
    @classmethod
    def _safe_prefix(cls, v: str) -> str:
        return check_name("key_prefix", v)  # refused at config load, before any key is built
