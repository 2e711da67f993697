"""The async reads' pipelined connection (aio.py) on the machine's Redis: concurrent callers get their
own replies, a caller past its deadline leaves the connection in step, a killed connection is replaced,
and ACL credentials and the db number are applied on connect."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aredis

from fs_platform.errors import OnlineAccessDenied
from fs_platform.plugins.redis_store import aio
from fs_platform.plugins.redis_store.connection import Endpoint, translated
from fs_platform.plugins.redis_store.online_store import RedisOnlineStoreConfig
from tests.plugins.redis_store.conftest import MACHINE_URL

pytestmark = pytest.mark.redis


@pytest.fixture
def keys():
    admin = redis.Redis.from_url(MACHINE_URL)
    prefix = f"aio{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}:{i}" for i in range(200)]
    admin.mset({k: str(i).encode() for i, k in enumerate(names)})
    yield names
    admin.unlink(*names)


def _connection(url: str = MACHINE_URL, **kw) -> aio.PipelinedConnection:
    client = aredis.Redis.from_url(url, **kw)
    assert aio.supported(client)
    return aio.PipelinedConnection(client, RedisOnlineStoreConfig(url=url, retry_attempts=2))


def test_concurrent_reads_get_their_own_replies_and_a_late_caller_leaves_it_in_step(keys):
    async def scenario():
        conn = _connection()
        reads = [keys[i : i + 1 + i % 7] for i in range(150)]
        got = await asyncio.gather(*[conn.mget(k) for k in reads])
        assert got == [[k.split(":")[1].encode() for k in ks] for ks in reads]
        loop = asyncio.get_running_loop()
        # A command ahead of it holds the connection for 0.3 s: this read's reply comes after its deadline
        blocked = conn._proto.send(aio.pack_command((b"BLPOP", f"{keys[0]}:none".encode(), b"0.3")))
        with pytest.raises(TimeoutError):
            await conn.mget(keys[:50], deadline=loop.time() + 0.05)
        assert await blocked is None  # then the late replies arrive: the timed-out one is dropped
        assert await conn.mget(keys[60:62], deadline=loop.time() + 5) == [b"60", b"61"]
        conn.close()

    asyncio.run(scenario())


def test_a_killed_connection_is_replaced_on_the_next_read(keys):
    async def scenario():
        conn = _connection()
        assert await conn.mget(keys[:1]) == [b"0"]
        admin = redis.Redis.from_url(MACHINE_URL)
        port = conn._proto.transport.get_extra_info("sockname")[1]
        assert admin.client_kill_filter(addr=f"127.0.0.1:{port}") == 1
        assert await conn.mget(keys[1:3]) == [b"1", b"2"]
        conn.close()

    asyncio.run(scenario())


def test_credentials_and_db_are_applied_on_connect(keys):
    admin = redis.Redis.from_url(MACHINE_URL)
    user, pw = f"fs_test_aio_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    prefix = keys[0].split(":")[0]
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{pw}", f"~{prefix}:*", "+mget", "+select")
    endpoint = Endpoint(MACHINE_URL, "standalone")

    async def scenario():
        conn = _connection(username=user, password=pw)  # db 9 from the URL: SELECT on connect
        assert await conn.mget(keys[5:7]) == [b"5", b"6"]
        with pytest.raises(OnlineAccessDenied, match="ACL"), translated(endpoint):
            await conn.mget(["elsewhere:1"])
        conn.close()
        wrong = _connection(username=user, password="not-it")
        with pytest.raises(OnlineAccessDenied, match="credentials"), translated(endpoint):
            await wrong.mget(keys[:1])

    try:
        asyncio.run(scenario())
    finally:
        admin.execute_command("ACL", "DELUSER", user)
