"""The one batch-write path (materialize, push, ingestor): event-time-ordered, atomic per key.

Rows become ``EVALSHA writes.lua`` calls of up to ``batch_size`` keys each (KEYS = the rows'
keys, ARGV = the view's ttl, the key expiry of ``key_ttl_seconds``, then the encoded rows; grouped
by hash slot in Cluster mode), all sent in one pipeline: one round trip per batch (per node in
Cluster), no read-then-write from the client. The script is idempotent, so a batch is retried whole on
NOSCRIPT (after loading the script) and by redis-py on connection errors.

Arrow input (``prepare_arrow``) is encoded column-wise by Arrow compute: keys, JSON rows and
the ttl filter cost no per-value Python for scalar features.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.crc import key_slot

from fs_platform.observability import span
from fs_platform.plugins.redis_store.codec import ViewCodec
from fs_platform.plugins.redis_store.connection import Endpoint, translated

WRITE_LUA = resources.files("fs_platform.plugins.redis_store").joinpath("writes.lua").read_text()
WRITE_SHA = hashlib.sha1(WRITE_LUA.encode()).hexdigest()


@dataclass(frozen=True)
class WriteResult:
    """Outcome of a batch write: rows stored vs rows that lost to a newer-or-equal stored event
    (``skipped_stale``, which includes redeliveries) or were already past the view's ttl."""

    written: int = 0
    skipped_stale: int = 0
    skipped_expired: int = 0

    @property
    def rows(self) -> int:
        return self.written + self.skipped_stale + self.skipped_expired

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.written + other.written,
            self.skipped_stale + other.skipped_stale,
            self.skipped_expired + other.skipped_expired,
        )


@dataclass
class PreparedBatch:
    """Keys and encoded rows of one view, ready to send; the script derives each key's expiry
    from its row's event time and ``ttl_us`` (0 = none)."""

    keys: list[str]
    payloads: list[str]
    ttl_us: int
    expired: int
    codec: ViewCodec


def _cutoff(ttl_us: int, now_us: int | None) -> int:
    return (time.time_ns() // 1000 if now_us is None else now_us) - ttl_us


def prepare(
    codec: ViewCodec,
    ttl_us: int,
    keys: list[str],
    event_us: list[int],
    created_us: list[int],
    rows: list[list],
    now_us: int | None = None,
) -> PreparedBatch:
    """Encode rows; rows already older than the ttl are dropped here (they could never be served)."""
    encode = codec.encode
    if ttl_us:
        cutoff = _cutoff(ttl_us, now_us)
        kept = [
            (key, encode(ev, ct, row))
            for key, ev, ct, row in zip(keys, event_us, created_us, rows, strict=True)
            if ev >= cutoff
        ]
        out_keys, out_payloads = [k for k, _ in kept], [p for _, p in kept]
    else:
        out_keys = list(keys)
        out_payloads = [encode(ev, ct, row) for ev, ct, row in zip(event_us, created_us, rows, strict=True)]
    return PreparedBatch(out_keys, out_payloads, ttl_us, len(keys) - len(out_keys), codec)


def prepare_arrow(
    codec: ViewCodec,
    ttl_us: int,
    keys_of,
    table: pa.Table,
    event_us: pa.Array,
    created_us: pa.Array,
    now_us: int | None = None,
) -> PreparedBatch:
    """Like ``prepare`` for Arrow columns (int64 microseconds); ``keys_of(table)`` gives the keys."""
    n = table.num_rows
    if ttl_us and n:
        alive = pc.greater_equal(event_us, _cutoff(ttl_us, now_us))
        if not pc.all(alive).as_py():
            table, event_us, created_us = (
                table.filter(alive),
                event_us.filter(alive),
                created_us.filter(alive),
            )
    payloads = codec.encode_arrow(table, event_us, created_us).to_pylist()
    return PreparedBatch(keys_of(table), payloads, ttl_us, n - table.num_rows, codec)


class BatchWriter:
    """Sends prepared batches; one per client (sync or asyncio)."""

    def __init__(
        self,
        client,
        endpoint: Endpoint,
        *,
        cluster: bool,
        batch_size: int,
        schemas_key: str,
        key_ttl_s: int = 0,
    ):
        """``key_ttl_s``: Feast's ``key_ttl_seconds``, every written key expires that long after the
        write (or earlier, at its view's ttl); 0 = no such expiry."""
        self._key_ttl_ms = max(key_ttl_s, 0) * 1000
        self._client = client
        self._endpoint = endpoint
        self._cluster = cluster
        self._batch_size = batch_size
        self._schemas_key = schemas_key
        self._registered: set[tuple[str, int]] = set()

    def forget(self, view_name: str | None) -> None:
        """Re-register schemas after their view (None: every view) was deleted."""
        self._registered = {s for s in self._registered if view_name is not None and s[0] != view_name}

    def _groups(self, batch: PreparedBatch):
        """(keys, rows) per script call: chunks of ``batch_size`` keys of one slot, in row order."""
        keys, payloads, size = batch.keys, batch.payloads, self._batch_size
        if not self._cluster:
            for start in range(0, len(keys), size):
                yield keys[start : start + size], payloads[start : start + size]
            return
        by_slot: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            by_slot.setdefault(key_slot(k.encode()), []).append(i)
        for idx in by_slot.values():
            for start in range(0, len(idx), size):
                chunk = idx[start : start + size]
                yield [keys[i] for i in chunk], [payloads[i] for i in chunk]

    def _fill(self, pipe, batch: PreparedBatch) -> int:
        schema = (batch.codec.view_name, batch.codec.fingerprint)
        extra = 0
        if schema not in self._registered:
            pipe.hsetnx(self._schemas_key, f"{schema[0]}:{schema[1]}", batch.codec.schema_json)
            extra = 1
        ttl = batch.ttl_us
        key_at = time.time_ns() // 1_000_000 + self._key_ttl_ms if self._key_ttl_ms else 0
        for keys, rows in self._groups(batch):
            pipe.execute_command("EVALSHA", WRITE_SHA, len(keys), *keys, ttl, key_at, *rows)
        return extra

    def _result(self, batch: PreparedBatch, replies: list, extra: int) -> WriteResult:
        if extra:
            self._registered.add((batch.codec.view_name, batch.codec.fingerprint))
        written = sum(replies[extra:])
        return WriteResult(written, len(batch.keys) - written, batch.expired)

    def _send(self, batch: PreparedBatch) -> WriteResult:
        with self._client.pipeline(transaction=False) as pipe:
            extra = self._fill(pipe, batch)
            return self._result(batch, pipe.execute(), extra)

    async def _send_async(self, batch: PreparedBatch) -> WriteResult:
        async with self._client.pipeline(transaction=False) as pipe:
            extra = self._fill(pipe, batch)
            return self._result(batch, await pipe.execute(), extra)

    def write(self, batch: PreparedBatch) -> WriteResult:
        if not batch.keys:
            return WriteResult(skipped_expired=batch.expired)
        with translated(self._endpoint):
            try:
                return self._send(batch)
            except redis.exceptions.NoScriptError:  # first use on this server, or after a flush/failover
                self._client.script_load(WRITE_LUA)
                return self._send(batch)

    async def write_async(self, batch: PreparedBatch) -> WriteResult:
        if not batch.keys:
            return WriteResult(skipped_expired=batch.expired)
        with translated(self._endpoint):
            try:
                return await self._send_async(batch)
            except redis.exceptions.NoScriptError:
                await self._client.script_load(WRITE_LUA)
                return await self._send_async(batch)


@dataclass
class RowWrite:
    """Rows of one view encoded for writes.lua (``prepare_arrow``), ready to send: the ingestor encodes
    on its loop thread so that its online writer thread holds the GIL only to send and read (see
    tile_events.EventWrite)."""

    state: Any  # StoreState (which imports this module)
    view: str
    rows: int
    batches: list[PreparedBatch]

    def send(self, progress: Callable | None = None) -> WriteResult:
        """Write the rows (each batch one round trip; idempotent); ``progress()`` after each."""
        result = WriteResult()
        with span("fs.online.write", view=self.view, rows=self.rows):
            for batch in self.batches:
                result += self.state.writer.write(batch)
                if progress is not None:
                    progress()
        return result
