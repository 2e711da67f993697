"""The platform's one exception hierarchy.

Every error a user can see derives from ``FsError`` and carries a one-line message that says
what was wrong, where, and (``hint``) the next command to run. The CLI prints ``str(err)`` on one
line and exits 1; ``FS_DEBUG=1`` adds the traceback.

Transient errors (worth a retry with backoff) mix in ``TransientError``; everything else is
terminal. Retry loops decide by type, never by parsing messages::

    FsError
    ├── ConfigError            bad feature_store.yaml, unknown --env, missing repo, bad settings
    ├── InvalidArgument        a bad argument value: time, duration, range (also a ValueError; CLI exit 2)
    │   └── EntityKeyTypeError      an entity key not exactly of its join key's type (fs.entity_keys)
    ├── PolicyError            feature metadata policy violated at apply (one line per problem)
    ├── RepoError              a registry object (view, feature, source) is missing or wrong
    │   └── ViewNotFoundError       no registered feature view of that name (fs.views)
    ├── OfflineStoreError
    │   ├── SourceNotFoundError     Delta table/path does not exist
    │   ├── SchemaMismatchError     view schema vs Delta columns/types
    │   └── EntityDataFrameError    entity_df lacks a join key or timestamp column
    ├── OnlineStoreError
    │   ├── OnlineStoreUnavailable  (transient) Redis unreachable / timed out
    │   ├── OnlineAccessDenied      authentication failed or ACL forbids the key/command
    │   ├── UnknownFeatureError     a read or retrieval asked for a feature the view does not have
    │   └── OnlineWriteError        wrong value types, unknown features
    ├── IngestError
    │   ├── BrokerUnavailable       (transient) Kafka unreachable
    │   └── SinkUnavailable         (transient) an ingest write target (online store, Delta) failed
    ├── BackfillError
    │   └── LeaseHeldError          another run holds the view's lease
    ├── ParityError
    ├── OpsError               fs doctor / fs ops: a bad plan file, an unknown action or execution id
    │   └── OpsRefused              an ops policy rule refused an action (``rule`` names it)
    ├── ValidationFailed        a data-quality gate rejected data
    └── ValueDoesNotFitError    stored values do not fit a feature's declared type (fs.casts)
"""

from __future__ import annotations


class FsError(Exception):
    """Base of every user-facing platform error."""

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} — {hint}")


class TransientError(FsError):
    """Mixin meaning: the same call may succeed later (retry with backoff)."""


class ConfigError(FsError):
    pass


class InvalidArgument(FsError, ValueError):
    """A bad value passed to the API or the CLI (``not a time: '2026-13-45' (use ...)``), named as the
    caller wrote it (``start``, ``--chunk``). A ``ValueError`` too, so existing ``except ValueError``
    (and pydantic validators) keep working. The CLI prints it on one line and exits 2 (usage)."""


class EntityKeyTypeError(InvalidArgument):
    """Entity key values (entity_df, online entity rows) that are not exactly of their join key's type:
    ``2.0`` and ``"2"`` are the integer key 2, ``2.5`` and ``"02"`` are refused (``fs_platform.entity_keys``).
    The message counts them and never quotes them (keys may be PII)."""


class PolicyError(FsError):
    """Carries every problem found, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems), hint=None)


class RepoError(FsError):
    pass


class ViewNotFoundError(RepoError):
    """A feature view name that is not registered; raised by ``fs_platform.views`` (lists the known views)."""


class OfflineStoreError(FsError):
    pass


class SourceNotFoundError(OfflineStoreError):
    pass


class SchemaMismatchError(OfflineStoreError):
    """A view's schema vs its Delta table (or rows about to be written). ``problems``: every mismatch
    found, one line each, when the check reports them all (``fs apply``, backfills); the CLI prints
    one line per problem."""

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None):
        self.problems = list(problems or [])
        super().__init__(message, hint=hint)


class EntityDataFrameError(OfflineStoreError):
    pass


class OnlineStoreError(FsError):
    pass


class OnlineStoreUnavailable(OnlineStoreError, TransientError):
    pass


class OnlineWriteError(OnlineStoreError):
    pass


class OnlineAccessDenied(OnlineStoreError):
    pass


class UnknownFeatureError(OnlineStoreError, KeyError):
    """A feature its view does not have, in an online read or a retrieval (``Platform.store``). A
    ``KeyError`` too, like Feast's own, so existing ``except KeyError`` keeps working."""

    __str__ = FsError.__str__  # KeyError's would quote the message


class IngestError(FsError):
    pass


class BrokerUnavailable(IngestError, TransientError):
    pass


class SinkUnavailable(IngestError, TransientError):
    pass


class BackfillError(FsError):
    pass


class LeaseHeldError(BackfillError):
    pass


class ParityError(FsError):
    pass


class OpsError(FsError):
    """``fs doctor`` / ``fs ops``: an unreadable plan file, an unknown action id, a failed rollback."""


class OpsRefused(OpsError):
    """An ops policy rule refused an action (``fs_platform.doctor.policy``); ``rule`` names the rule
    (``kill_switch``, ``irreversible``, ``approval_required``, ``distinct_approver``, ``rate_limit``,
    ``env_mismatch``) so a refusal always says which rule refused it."""

    def __init__(self, rule: str, message: str, *, hint: str | None = None):
        self.rule = rule
        super().__init__(f"refused by ops policy rule {rule!r}: {message}", hint=hint)


class ValidationFailed(FsError):
    pass


class ValueDoesNotFitError(FsError, ValueError):
    """Values that do not fit a feature's declared type (an overflow, a fraction into an integer),
    counted per view and feature by ``fs_platform.casts``; never wrapped or truncated silently."""
