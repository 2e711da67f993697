"""Redis online store for Feast: ``RedisOnlineStore`` (+ config), ``WriteResult``, fast reads."""

from fs_platform.plugins.redis_store.writer import WriteResult

__all__ = ["WriteResult"]
