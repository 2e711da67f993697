"""The store's per-(config, project) state: clients (sync and per event loop), the key layout, codecs,
and the one-round-trip reads (``mget``, ``pipelined``) every read path uses."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from feast import FeatureView, RepoConfig

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.errors import ConfigError
from fs_platform.plugins.redis_store import aio, direct, embedded
from fs_platform.plugins.redis_store.codec import ViewCodec
from fs_platform.plugins.redis_store.connection import Endpoint, connect, translated
from fs_platform.plugins.redis_store.keys import KeyLayout
from fs_platform.plugins.redis_store.reader import ViewRead, ViewResult, build_keys, decode
from fs_platform.plugins.redis_store.tile_store import TileRead
from fs_platform.plugins.redis_store.writer import BatchWriter

if TYPE_CHECKING:
    from fs_platform.plugins.redis_store.online_store import RedisOnlineStoreConfig
    from fs_platform.plugins.redis_store.read_plan import ReadPlan


class StoreState:
    """Clients and caches for one (config, project); created lazily, reused for every call."""

    def __init__(self, config: RepoConfig):
        cfg: RedisOnlineStoreConfig = config.online_store
        self.cfg = cfg
        if cfg.url:
            url, mode = cfg.url, cfg.mode
        else:
            if cfg.mode != "standalone":
                raise ConfigError(f"online_store.mode {cfg.mode} needs online_store.url")
            data_dir = cfg.embedded_dir or Path(config.repo_path or ".") / "data" / "valkey"
            url, mode = embedded.ensure_server(data_dir), "standalone"
        extra = tuple((h, int(p)) for h, p in (n.rsplit(":", 1) for n in cfg.extra_nodes))
        self.endpoint = Endpoint(url, mode, extra, cfg.sentinel_master)
        self.cluster = mode == "cluster"
        self.layout = KeyLayout(cfg.key_prefix, config.project, key_hash_secret(cfg))
        self.client = connect(self.endpoint, cfg)
        self.writer = BatchWriter(
            self.client,
            self.endpoint,
            cluster=self.cluster,
            batch_size=cfg.write_batch_size,
            schemas_key=self.layout.schemas_key,
            key_ttl_s=cfg.key_ttl_seconds or 0,
        )
        self._async: tuple[asyncio.AbstractEventLoop, Any, BatchWriter] | None = None
        self._aio: aio.PipelinedConnection | None = None  # the async reads' connection (standalone TCP)
        self._direct: direct.DirectConnection | None | bool = None  # False: not possible for this endpoint
        self._codecs: dict[int, tuple[FeatureView, ViewCodec]] = {}
        self._schemas: dict[tuple[str, int], str | None] = {}
        self.plans: dict[int, tuple[object, ReadPlan | None]] = {}

    def close(self) -> None:
        """Disconnect the clients (the async one only if its event loop can still run its close)."""
        self.client.close()
        if self._aio is not None:
            self._aio.close()
            self._aio = None
        if self._direct:
            self._direct.close()
        self._direct = None
        if self._async is not None:  # loop-bound; in the CLI and in scripts its loop has ended by now
            loop, client, _ = self._async
            self._async = None
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.aclose())

    def codec(self, view: FeatureView) -> ViewCodec:
        hit = self._codecs.get(id(view))
        if hit is not None and hit[0] is view:
            return hit[1]
        if len(self._codecs) > 1024:  # registry refreshes create new view objects
            self._codecs.clear()
        codec = ViewCodec(view)
        self._codecs[id(view)] = (view, codec)
        return codec

    def async_client(self) -> tuple[Any, BatchWriter]:
        """The asyncio client of the running loop (redis.asyncio connections are loop-bound)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = connect(self.endpoint, self.cfg, asyncio=True)
            writer = BatchWriter(
                client,
                self.endpoint,
                cluster=self.cluster,
                batch_size=self.cfg.write_batch_size,
                schemas_key=self.layout.schemas_key,
                key_ttl_s=self.cfg.key_ttl_seconds or 0,
            )
            self._async = (loop, client, writer)
        return self._async[1], self._async[2]

    def old_schema(self, view_name: str, fingerprint: int) -> str | None:
        """Field list of an older schema (rare: only rows written before a schema change)."""
        key = (view_name, fingerprint)
        if key not in self._schemas:
            with translated(self.endpoint):
                raw = self.client.hget(self.layout.schemas_key, f"{view_name}:{fingerprint}")
            self._schemas[key] = raw.decode() if raw is not None else None
        return self._schemas[key]

    def mget(self, keys: list[str]) -> list:
        if not keys:
            return []
        with translated(self.endpoint):
            if self.cluster:
                return self.client.mget_nonatomic(keys)
            return self._on_connection(lambda conn: _mget_on(conn, keys))

    def pipelined(self, commands: list[tuple[str, tuple]]) -> list:
        """Replies of ``commands`` sent in one round trip (an error reply comes back as the exception).
        Every command sent this way is idempotent (reads, tile scripts), so a retry resends them all.
        Standalone: on one pooled connection, as ``mget``; Cluster: redis-py's cluster pipeline."""
        with translated(self.endpoint):
            if self.cluster:
                with self.client.pipeline(transaction=False) as pipe:
                    for name, args in commands:
                        pipe.execute_command(name, *args)
                    return pipe.execute(raise_on_error=False)
            return self._on_connection(lambda conn: _pipeline_on(conn, commands))

    def _on_connection(self, send):
        """``send(conn)`` on one pooled connection with the client's own Retry (same attempts and
        backoff as a client command), without redis-py's per-command bookkeeping: at 1-5 keys that
        bookkeeping was ~30% of a FastReader.read."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            return conn.retry.call_with_retry(lambda: send(conn), lambda _err: conn.disconnect())
        finally:
            if conn.should_reconnect():
                conn.disconnect()
            pool.release(conn)

    async def mget_async(self, keys: list[str], deadline: float | None = None) -> list:
        """MGET on the loop's pipelined connection (standalone over TCP) or redis.asyncio (Cluster,
        Sentinel, TLS, Unix socket). ``deadline``: loop time (``loop.time()``) past which the builtin
        ``TimeoutError`` is raised."""
        if not keys:
            return []
        conn = self._aio
        if conn is None or conn.loop is not asyncio.get_running_loop():
            conn = self._pipelined()
        with translated(self.endpoint):
            if conn is not None:
                return await conn.mget(keys, deadline)
            client, _ = self.async_client()
            read = client.mget_nonatomic(keys) if self.cluster else client.mget(keys)
            if deadline is None:
                return await read
            async with asyncio.timeout_at(deadline):
                return await read

    def mget_direct(self, keys: list[str], timeout: float) -> list | None:
        """MGET answered in the calling thread (``direct.py``), or None when it cannot be (not
        connected yet, failed, past ``timeout`` seconds, or not a standalone TCP server): then read with
        ``mget_async``, which retries and reports errors."""
        conn = self._direct
        if conn is None or (conn and conn.pid != os.getpid()):
            conn = self._direct = self._direct_connection()
        if not conn or not keys:
            return None
        return conn.mget(aio.pack_mget(keys), timeout)

    def _direct_connection(self) -> direct.DirectConnection | bool:
        client = self._plain_tcp()
        if client is None:
            return False
        return direct.DirectConnection(**aio.server_of(client), connect_timeout=self.cfg.connect_timeout_s)

    def _plain_tcp(self):
        """The loop's redis.asyncio client if it talks plain TCP to one standalone server (what the
        pipelined and the direct connections replace), else None."""
        client, _ = self.async_client()
        if self.cluster or self.endpoint.mode != "standalone" or not aio.supported(client):
            return None
        return client

    def _pipelined(self) -> aio.PipelinedConnection | None:
        client = self._plain_tcp()
        if client is None:
            return None
        if self._aio is not None:
            self._aio.close()
        self._aio = aio.PipelinedConnection(client, self.cfg)
        return self._aio

    def read(
        self, reads: Sequence[ViewRead], columns: Mapping[str, Sequence], n: int, now_us: int | None = None
    ) -> list[ViewResult]:
        """Values of ``reads`` for ``n`` entity rows as of ``now_us`` (default: the clock): one MGET for
        every view, plain rows and aggregation tiles alike."""
        return self.results(reads, self.mget(build_keys(self.layout, reads, columns)), n, now_us)

    async def read_async(self, reads, columns, n, now_us: int | None = None) -> list[ViewResult]:
        replies = await self.mget_async(build_keys(self.layout, reads, columns))
        # old_schema is a sync HGET, made at most once per (view, old fingerprint) per process.
        return self.results(reads, replies, n, now_us)

    def results(self, reads, replies: list, n: int, now_us: int | None) -> list[ViewResult]:
        """MGET replies (``build_keys`` order) -> results: rows decoded, tiles merged as of ``now_us``."""
        if not any(isinstance(r, TileRead) for r in reads):
            return decode(reads, replies, n, self.old_schema, now_us)
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        plain = [r for r in reads if not isinstance(r, TileRead)]
        rows = [
            x
            for i, r in enumerate(reads)
            if not isinstance(r, TileRead)
            for x in replies[i * n : (i + 1) * n]
        ]
        decoded = iter(decode(plain, rows, n, self.old_schema, now_us) if plain else [])
        return [
            r.result(replies[i * n : (i + 1) * n], now_us) if isinstance(r, TileRead) else next(decoded)
            for i, r in enumerate(reads)
        ]


def view_read(
    layout: KeyLayout, view: FeatureView, codec: ViewCodec, features, join_key_map=None, *, ttl: bool = True
) -> ViewRead:
    """The compiled read of a view: tiles merged at request time for aggregation views. ``ttl``: the
    store's ``enforce_view_ttl`` (tiles have windows, not a ttl)."""
    if is_aggregation(view):
        return TileRead(layout, view, codec, features, join_key_map)
    return ViewRead(layout, view, codec, features, join_key_map, ttl=ttl)


def _pipeline_on(conn, commands: list[tuple[str, tuple]]) -> list:
    """Every reply is read, so the connection stays in step; an error reply comes back as the exception.
    The commands go out as one buffer: redis-py sends its ~6 KB pieces one ``sendall`` each, and each
    call gives up the GIL and waits to take it back (up to the switch interval, 5 ms, while another
    thread computes): a tile write of 50,000 events was ~130 such waits in the ingestor."""
    conn.send_packed_command([b"".join(conn.pack_commands([(name, *args) for name, args in commands]))])
    replies = []
    for _ in commands:
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as e:
            replies.append(e)
    return replies


def _mget_on(conn, keys: list[str]) -> list:
    conn.send_command("MGET", *keys)
    return conn.read_response()


def key_hash_secret(cfg: RedisOnlineStoreConfig) -> str | None:
    """The tenant's key hash secret from the environment (never logged), or None if not configured."""
    if not cfg.key_hash_secret_env:
        return None
    secret = os.environ.get(cfg.key_hash_secret_env)
    if not secret:
        raise ConfigError(
            f"online_store.key_hash_secret_env names ${cfg.key_hash_secret_env}, which is not set"
        )
    return secret
