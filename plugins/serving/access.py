"""Who may read what through ``fs serve``: a request's caller from its API key, and the online-read role
and PII grants a request plan needs (``Plan.needs``)."""

from __future__ import annotations

from fs_platform.governance.pii import GRANTS, ONLINE_READER
from fs_platform.plugins.serving.http_io import HttpError
from fs_platform.plugins.serving.settings import ANONYMOUS, Caller, key_digest

_READER_ROLES = frozenset({ONLINE_READER, *(r for roles in GRANTS.values() for r in roles)})


def authenticate(callers: dict, headers: list) -> Caller:
    """The caller whose key the request carries (``Authorization: Bearer`` or ``X-API-Key``); anonymous
    when the server has no keys."""
    if not callers:
        return ANONYMOUS
    key = None
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            key = value[7:].strip()
        elif name == b"x-api-key":
            key = value.strip()
    caller = callers.get(key_digest(key.decode("latin-1"))) if key else None
    if caller is None:
        raise HttpError(401, "missing or unknown API key", [(b"www-authenticate", b"Bearer")])
    return caller


def check_access(plan, caller: Caller) -> None:
    """403 unless ``caller`` may read online and holds a grant for each PII feature of ``plan``."""
    if not caller.roles & _READER_ROLES:
        raise HttpError(403, f"caller {caller.name!r} has no online-read role")
    denied = plan.denied(caller)
    if denied:
        from fs_platform.governance.metrics import PII_READS_DENIED

        PII_READS_DENIED.labels("server").inc()
        need = sorted({r for ref in denied for r in plan.needs[ref]})
        raise HttpError(
            403, f"reading {', '.join(denied)} online needs a PII grant (role {' or '.join(need)})"
        )
