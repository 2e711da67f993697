"""``backfill:`` section of feature_store.yaml (optional; every field has a default).

    backfill:
      ledger_path: s3://bucket/fs/_ledger   # default: data/_fs/ledger inside the repo
      lease_ttl_seconds: 10
      chunk: 1d
      compute_span: 7                 # chunks recomputed in one pass of the batch definition
      compute_span_rows: 5000000      # ... unless their input rows (estimated) exceed this

Feast keeps unknown top-level sections of ``feature_store.yaml`` as extras, so the section travels
with the env overlays (``envs/<env>.yaml``) like everything else.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fs_platform.config import first_error
from fs_platform.errors import ConfigError
from fs_platform.metadata import parse_duration
from fs_platform.plugins.delta.tables import resolve_path


class BackfillSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ledger_path: str = "data/_fs/ledger"
    """Delta table of the ledger; a relative path is inside the feature repo folder."""

    lease_ttl_seconds: int = Field(default=10, ge=5)
    """A run's lease expires this long after its last heartbeat (heartbeats every fifth of it), so a
    run killed on another host blocks the view for at most this long (one that died on the same host
    is taken over at once). A run whose heartbeats fail or stall for this long stops before its next
    commit: raise it where Redis blips or process pauses last longer."""

    chunk: str = "1d"
    """Default chunk size (``6h``, ``1d``, ``7d``): one ledger entry and one Delta commit per chunk."""

    compute_span: int = Field(default=7, ge=1)
    """Adjacent pending chunks recomputed in one pass of the view's batch definition (``--compute-span``).
    A windowed definition reads and recomputes its lookback once per pass instead of once per chunk;
    each chunk is still validated, committed (one Delta commit) and recorded in the ledger on its own,
    in order, so a kill loses only the uncommitted chunks of the current pass. 1 = one pass per chunk."""

    compute_span_rows: int = Field(default=5_000_000, ge=0)
    """A pass is split (halved) while its estimated input rows (Delta statistics of the definition's
    first input, lookback included) exceed this: bounds the memory of one pass. 0 = no bound."""

    @field_validator("chunk")
    @classmethod
    def _chunk(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def chunk_size(self) -> timedelta:
        return parse_duration(self.chunk)

    def ledger_location(self, repo_path: Path) -> str:
        return resolve_path(self.ledger_path, repo_path)


def load_settings(repo_config) -> BackfillSettings:
    raw = (getattr(repo_config, "model_extra", None) or {}).get("backfill") or {}
    try:
        return BackfillSettings(**raw)
    except ValidationError as e:
        where, msg = first_error(e)
        raise ConfigError(f"invalid backfill.{where} in feature_store.yaml: {msg}") from None
