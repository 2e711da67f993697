"""Small-file compaction of the append-only Delta tables fs keeps for itself (the backfill ledger,
the ops audit log): every entry is a one-row commit, so reads slow down unless files are folded."""

from __future__ import annotations

import logging

from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

log = logging.getLogger(__name__)


def compact_small_files(location: str, at_files: int, what: str) -> None:
    """Fold the table's files into few (rows unchanged) once it has ``at_files`` or more, and write a
    checkpoint. A missing table is nothing to do; a concurrent append winning is tried next time."""
    try:
        table = DeltaTable(location)
        if len(table.file_uris()) < at_files:
            return
        table.optimize.compact()
        table.create_checkpoint()
    except TableNotFoundError:
        return
    except (CommitFailedError, DeltaError) as e:
        log.info("%s compaction skipped: %s", what, e)
