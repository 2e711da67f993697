"""``fs serve`` settings: ``<repo>/serve.yaml`` (optional), overridden by command-line flags.

    # feature_repo/serve.yaml
    deadline_ms: 50            # per request, Redis time included
    max_inflight: 128          # per worker; beyond it: 503 + Retry-After
    max_entities: 1000         # per request
    auth:
      mode: api_key            # none (default): anonymous callers, no PII features
      identities:
        - name: fraud-scoring
          key_env: FS_SERVE_KEY_FRAUD     # the key itself lives in the environment
          roles: [fs-online-reader]
    served_log:
      sample: 0.01             # log 1% of requests' served vectors to a Delta table (default 0: off)

Keys are read from the environment at start-up; a missing variable refuses the start. Only
SHA-256 digests of the keys are kept in memory, never logged.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fs_platform.config import first_error
from fs_platform.errors import ConfigError
from fs_platform.governance.pii import ONLINE_READER


class Identity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    key_env: str
    """Environment variable holding this caller's API key (sent as ``Authorization: Bearer <key>``
    or ``X-API-Key: <key>``)."""
    roles: list[str] = Field(default_factory=lambda: [ONLINE_READER])


class Auth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["none", "api_key"] = "none"
    identities: list[Identity] = Field(default_factory=list)


class Tls(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certfile: str
    keyfile: str


class ServedLogSettings(BaseModel):
    """Served-feature logging (``plugins/serving/served_log.py``): a sample of served vectors in Delta."""

    model_config = ConfigDict(extra="forbid")
    sample: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of read requests logged (every entity row of a sampled request); 0 (default): off, no cost."""
    path: str = "data/_fs/served_features"
    """Delta table the rows are appended to (relative to the repo, or a URI); ``fs parity skew`` reads it."""
    pii: Literal["hash", "exclude"] = "hash"
    """PII-classified feature values and ``pii``-tagged entity keys: ``hash`` (a keyed token: set
    ``$FS_PII_MASK_KEY`` for tokens equal across workers) or ``exclude`` (not written)."""
    queue_max: int = Field(default=20_000, ge=1)
    """Sampled requests waiting per worker; beyond it a request is not logged (counted, never blocked).
    A write starts early once half of it is queued."""
    batch_rows: int = Field(default=20_000, ge=1)
    """Rows per Delta append at most (every append costs milliseconds of CPU whatever its size: few, large
    appends keep the cost per row low)."""
    flush_s: float = Field(default=30.0, gt=0)
    """Longest a sampled row waits before it is written (one Delta append per worker per flush)."""


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 6566
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    """Processes, each with its own event loop; default one per core."""
    deadline_ms: float = 100.0
    """Budget of one request, from receiving it to the response; Redis time counts against it."""
    max_inflight: int = 128
    """Requests in progress per worker; more are shed with 503 + Retry-After (never queued)."""
    max_entities: int = 1000
    max_body_bytes: int = 1 << 20
    direct_reads: bool = True
    """A worker with one request to answer and nothing else in progress reads Redis within the loop
    callback (waits by polling for up to 100 us, then blocks for at most 5 ms) instead of through the
    pipelined async connection: 1.2-1.3x the requests/s at one connection (docs/serving.md). False:
    always the pipelined read."""
    breaker_failures: int = 5
    """Consecutive failed Redis reads that open the breaker (reads then fail fast, /ready is 503)."""
    breaker_reset_s: float = 1.0
    """Seconds before an open breaker lets one probe read through."""
    registry_refresh_s: float = 10.0
    """How often each worker re-reads the registry; plans are rebuilt only when it changed."""
    shutdown_grace_s: float = 10.0
    """On SIGTERM: stop accepting, finish in-flight requests for at most this long."""
    access_log_sample: float = 0.0
    """Fraction of requests logged (method, path, status, latency, feature service, entity count:
    never entity keys or values). Off by default."""
    otel_spans: bool = False
    """One OpenTelemetry span per read request (``fs.serve.request``: feature service and status, never
    keys or values), exported by the process's OTel SDK (``FS_OTEL_EXPORTER=console`` or your own)."""
    auth: Auth = Field(default_factory=Auth)
    tls: Tls | None = None
    served_log: ServedLogSettings = Field(default_factory=ServedLogSettings)
    """Served-feature logging (off by default); see docs/serving.md "Served-feature logging"."""


@dataclass(frozen=True)
class Caller:
    name: str
    roles: frozenset[str]


ANONYMOUS = Caller("anonymous", frozenset({ONLINE_READER}))


def load(repo: Path, path: str | os.PathLike | None = None, **overrides) -> ServeSettings:
    """Settings from ``path`` (default ``<repo>/serve.yaml`` when it exists) plus non-None overrides."""
    file = Path(path) if path else repo / "serve.yaml"
    data: dict = {}
    if file.exists():
        data = yaml.safe_load(file.read_text()) or {}
    elif path:
        raise ConfigError(f"serve settings file {file} does not exist")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeSettings(**data)
    except ValidationError as e:
        where, msg = first_error(e)
        raise ConfigError(f"{file.name}: {where}: {msg}") from None


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def callers(auth: Auth) -> dict[bytes, Caller]:
    """API-key digest -> caller, keys read from the environment now."""
    if auth.mode == "none":
        return {}
    if not auth.identities:
        raise ConfigError("serve auth.mode is api_key but no identities are configured")
    out: dict[bytes, Caller] = {}
    for ident in auth.identities:
        key = os.environ.get(ident.key_env)
        if not key:
            raise ConfigError(f"identity {ident.name!r}: environment variable ${ident.key_env} is not set")
        if len(key) < 16:
            raise ConfigError(
                f"identity {ident.name!r}: the key in ${ident.key_env} is shorter than 16 characters"
            )
        out[key_digest(key)] = Caller(ident.name, frozenset(ident.roles))
    return out
