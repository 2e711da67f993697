"""The one batch-write path (materialize, push, ingestor): event-time-ordered, atomic per key.

Rows become ``EVALSHA writes.lua`` calls of up to ``batch_size`` keys (grouped by hash slot in
Cluster mode), all sent in one pipeline: one round trip per batch (per node in Cluster), no
read-then-write from the client. The script is idempotent, so a batch is retried whole on
NOSCRIPT (after loading the script) and by redis-py on connection errors.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources

import redis
from redis.crc import key_slot

from plugins.redis_store.codec import ViewCodec
from plugins.redis_store.connection import Endpoint, translated

WRITE_LUA = resources.files("plugins.redis_store").joinpath("writes.lua").read_text()
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
    """Keys, expiry (ms, 0 = none) and encoded rows of one view, ready to send."""

    keys: list[str]
    expire_ms: list[int]
    payloads: list[str]
    expired: int
    codec: ViewCodec


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
    out_keys, out_exp, out_payloads = [], [], []
    encode = codec.encode
    if ttl_us:
        cutoff = (time.time_ns() // 1000 if now_us is None else now_us) - ttl_us
        for key, ev, ct, row in zip(keys, event_us, created_us, rows, strict=True):
            if ev < cutoff:
                continue
            out_keys.append(key)
            out_exp.append(-(-(ev + ttl_us) // 1000))  # ceil: never expire before the ttl elapses
            out_payloads.append(encode(ev, ct, row))
    else:
        out_keys = list(keys)
        out_exp = [0] * len(keys)
        out_payloads = [encode(ev, ct, row) for ev, ct, row in zip(event_us, created_us, rows, strict=True)]
    return PreparedBatch(out_keys, out_exp, out_payloads, len(keys) - len(out_keys), codec)


class BatchWriter:
    """Sends prepared batches; one per client (sync or asyncio)."""

    def __init__(self, client, endpoint: Endpoint, *, cluster: bool, batch_size: int, schemas_key: str):
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
        if self._cluster:
            by_slot: dict[int, list[int]] = {}
            for i, k in enumerate(batch.keys):
                by_slot.setdefault(key_slot(k.encode()), []).append(i)
            groups = list(by_slot.values())
        else:
            groups = [range(len(batch.keys))]
        size = self._batch_size
        for idx in groups:
            for start in range(0, len(idx), size):
                chunk = idx[start : start + size]
                args = []
                for i in chunk:
                    args.append(batch.expire_ms[i])
                    args.append(batch.payloads[i])
                yield [batch.keys[i] for i in chunk], args

    def _fill(self, pipe, batch: PreparedBatch) -> int:
        schema = (batch.codec.view_name, batch.codec.fingerprint)
        extra = 0
        if schema not in self._registered:
            pipe.hsetnx(self._schemas_key, f"{schema[0]}:{schema[1]}", batch.codec.schema_json)
            extra = 1
        for keys, args in self._groups(batch):
            pipe.execute_command("EVALSHA", WRITE_SHA, len(keys), *keys, *args)
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
