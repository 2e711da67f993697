"""Redis clients (standalone, Cluster, Sentinel; sync and asyncio) and error translation.

Retries: redis-py retries a command on connection errors and timeouts with exponential
backoff and jitter, as configured. That is safe for every command this store sends: reads are
idempotent and the write script is too (an already-applied row is a no-op).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import redis.asyncio as aredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from fs_platform.errors import ConfigError, OnlineAccessDenied, OnlineStoreError, OnlineStoreUnavailable


@dataclass(frozen=True)
class Endpoint:
    """Where to connect; ``describe`` is safe to log (never contains credentials)."""

    url: str
    mode: str  # standalone | cluster | sentinel
    extra_nodes: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = "mymaster"

    @property
    def describe(self) -> str:
        parts = urlsplit(self.url)
        hosts = [f"{parts.hostname}:{parts.port or 6379}"] + [f"{h}:{p}" for h, p in self.extra_nodes]
        return f"{self.mode} " + ",".join(hosts)


def _common_kwargs(cfg) -> dict:
    kw = dict(
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        health_check_interval=cfg.health_check_interval_s,
        max_connections=cfg.max_connections,
    )
    for field, env in (("username", cfg.username_env), ("password", cfg.password_env)):
        if env:
            value = os.environ.get(env)
            if value is None:
                raise ConfigError(f"online_store.{field}_env names ${env}, which is not set")
            kw[field] = value
    return kw


def _retry(cfg, asyncio: bool):
    backoff = ExponentialWithJitterBackoff(cap=cfg.retry_backoff_cap_s, base=cfg.retry_backoff_base_s)
    cls = aredis.retry.Retry if asyncio else Retry
    return cls(backoff, cfg.retry_attempts, supported_errors=(redis.ConnectionError, redis.TimeoutError))


def connect(endpoint: Endpoint, cfg, *, asyncio: bool = False):
    """A client for the endpoint; ``asyncio=True`` gives the redis.asyncio flavour."""
    mod = aredis if asyncio else redis
    retry = _retry(cfg, asyncio)
    kw = _common_kwargs(cfg)
    if endpoint.mode == "standalone":
        return mod.Redis.from_url(endpoint.url, retry=retry, **kw)
    if endpoint.mode == "cluster":
        cluster_mod = aredis.cluster if asyncio else redis.cluster
        nodes = [cluster_mod.ClusterNode(h, p) for h, p in endpoint.extra_nodes]
        return cluster_mod.RedisCluster.from_url(endpoint.url, startup_nodes=nodes or None, retry=retry, **kw)
    if endpoint.mode == "sentinel":
        parts = urlsplit(endpoint.url)
        sentinels = [(parts.hostname, parts.port or 26379), *endpoint.extra_nodes]
        sentinel_mod = aredis.sentinel if asyncio else redis.sentinel
        ssl = parts.scheme == "rediss"
        db = int(parts.path.lstrip("/") or 0)
        sentinel = sentinel_mod.Sentinel(
            sentinels,
            ssl=ssl,
            sentinel_kwargs={k: v for k, v in kw.items() if k in ("username", "password", "socket_timeout")},
        )
        return sentinel.master_for(endpoint.sentinel_master, db=db, ssl=ssl, retry=retry, **kw)
    raise ConfigError(f"online_store.mode must be standalone, cluster or sentinel, got {endpoint.mode!r}")


def translate(exc: BaseException, endpoint: Endpoint) -> OnlineStoreError:
    """Map a redis-py exception to the platform hierarchy, naming the host but no credentials."""
    where = endpoint.describe
    if isinstance(exc, redis.AuthenticationError | redis.AuthenticationWrongNumberOfArgsError):
        return OnlineAccessDenied(
            f"Redis at {where} rejected the credentials",
            hint="check online_store.username_env / password_env",
        )
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return OnlineAccessDenied(
            f"Redis at {where} denied access by ACL: {exc}",
            hint="the user's ACL must allow ~<key_prefix>:* and the store's commands",
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return OnlineStoreUnavailable(
            f"Redis at {where} is unreachable ({type(exc).__name__}: {exc})",
            hint=f"check the server (redis-cli -u <url> ping); {where}",
        )
    return OnlineStoreError(f"Redis at {where} failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def translated(endpoint: Endpoint) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as e:
        raise translate(e, endpoint) from e
