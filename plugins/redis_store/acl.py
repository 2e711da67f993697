"""Redis ACL rules for a tenant's users, built from the key layout the store itself uses.

Three roles, each a superset of the one before (commands called inside the store's Lua scripts
count too: Redis checks ACLs inside scripts):

- ``serve``: reads only (``fs serve``, ``get_online_features``, parity);
- ``write``: + event-time-ordered writes, tiles, backfill/materialize leases (ingestor, materialize);
- ``admin``: + ``SCAN``/``UNLINK``/schema cleanup for ``fs apply`` deleting views and ``teardown``.
  ``SCAN`` lists key names of every tenant (ACLs cannot restrict it): see docs/online_store.md.
"""

from __future__ import annotations

from fs_platform.errors import ConfigError
from fs_platform.plugins.redis_store.keys import KeyLayout, check_name

_SERVE = ("+get", "+mget", "+hget", "+ping", "+select")
_WRITE = (
    *_SERVE,
    "+evalsha",
    "+script|load",
    "+set",
    "+hsetnx",
    "+hmget",
    "+hset",
    "+del",
    "+pexpire",
    "+pexpireat",
    "+pttl",
)
_ADMIN = (*_WRITE, "+scan", "+unlink", "+hkeys", "+hdel")
ROLES = {"serve": _SERVE, "write": _WRITE, "admin": _ADMIN}


def acl_rules(layout: KeyLayout, role: str = "admin") -> list[str]:
    """``ACL SETUSER <user>`` arguments (no password: the admin adds ``>secret`` separately, so a
    secret never passes through this code). ``reset`` first: the user gets exactly these rules."""
    if role not in ROLES:
        raise ConfigError(f"ACL role {role!r} is not one of {', '.join(ROLES)}")
    return ["reset", "on", f"~{layout.tenant_pattern()}", "resetchannels", "-@all", *ROLES[role]]


def repo_acl_rules(config, role: str = "admin") -> list[str]:
    """``acl_rules`` for the tenant prefix of a repo's ``RepoConfig`` (its Redis online store)."""
    from fs_platform.plugins.redis_store.online_store import RedisOnlineStoreConfig

    cfg = config.online_store
    if not isinstance(cfg, RedisOnlineStoreConfig):
        raise ConfigError("ACL rules are for the fs Redis online store; this repo uses another online store")
    return acl_rules(KeyLayout(cfg.key_prefix, config.project), role)


def user_name(name: str) -> str:
    """An ACL user name that prints as one shell/redis-cli token."""
    try:
        return check_name("ACL user name", name)
    except ValueError as e:
        raise ConfigError(str(e).split(" (")[0]) from None
