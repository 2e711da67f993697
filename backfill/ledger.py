"""The ledger: an append-only Delta table of every chunk state change, per view and target.

Why a Delta table (and not the Feast registry): every chunk writes two entries (``running``, then how
it ended); the file registry rewrites one protobuf blob per change and serialises writers, while a
Delta append is one small, atomic, conflict-free commit that lives next to the data it describes
(local disk in dev, object storage in prod) and keeps its own history. See docs/backfill.md.

"Done" coverage is built in recording order: a done entry adds its interval, any other entry
(planned, running, failed, rejected) takes it away again. So runs with different chunk sizes
recognise each other's work, and a newer run that planned, failed or died on part of a range that
was done before leaves that part to be redone (``--resume`` redoes it).

Recording order is ``recorded_at``, kept increasing across hosts: a ledger stamps each entry after
the latest one it has seen or written, so a run on a host whose clock is behind still records after
the runs before it (leases serialise runs of a view, and each starts by reading the ledger).

Scopes: one ledger table serves every environment and tenant of a repo, so each entry carries the
``scope`` of the store it describes (``scope(view, target)``, given by the ``Backfiller``): online
entries the online store's identity (a random id kept in that store under the tenant prefix and
project, so another server, tenant, project, or the same one after a teardown or a flush, is another
scope), offline entries the view's Delta table location. A ledger reads, counts and forgets only the
entries of its own scopes. ``Ledger(location)`` without ``scope`` sees only entries written without
one (tests, and entries recorded before scopes existed, which no scoped ledger trusts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from fs_platform.backfill.intervals import merge, remove, subtract
from fs_platform.backfill.model import Interval, Kind, LedgerEntry, Status, Target, ViewStatus
from fs_platform.compaction import compact_small_files
from fs_platform.errors import BackfillError

log = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("view", pa.string()),
        ("target", pa.string()),
        ("kind", pa.string()),
        ("start", _TS),
        ("end", _TS),
        ("status", pa.string()),
        ("holder", pa.string()),
        ("recorded_at", _TS),
        ("rows_in", pa.int64()),
        ("rows_written", pa.int64()),
        ("rows_skipped", pa.int64()),
        ("source_version", pa.int64()),
        ("target_version", pa.int64()),
        ("validation", pa.string()),
        ("message", pa.string()),
        ("scope", pa.string()),  # the store the entry describes (module docstring); null: unscoped
    ]
)
Scope = Callable[[str, Target], "str | None"]
"""``scope(view, target)``: the scope of a view's entries for a target (``None``: none of ours)."""
_COMPACT_AT_FILES = 200
_TICK = timedelta(microseconds=1)


class Ledger:
    def __init__(self, location: str, scope: Scope | None = None):
        self.location = location
        self._scope = scope
        self._lock = threading.Lock()  # parallel chunk workers share one ledger
        self._table: DeltaTable | None = None  # kept open: re-reading the log per append is the cost
        self._last: datetime | None = None  # latest recorded_at seen or written (None: not read yet)

    def _open(self) -> DeltaTable | str:
        if self._table is None and DeltaTable.is_deltatable(self.location):
            self._table = DeltaTable(self.location)
        return self._table if self._table is not None else self.location

    # -- writes --------------------------------------------------------------------------------
    def record(self, entries: Iterable[LedgerEntry]) -> None:
        entries = list(entries)
        if not entries:
            return
        with self._lock:
            if self._last is None:
                self._seen(self._read())
            rows = []
            for e in entries:  # after everything seen, in the order given (a clock behind waits its turn)
                at = e.recorded_at if self._last is None or e.recorded_at > self._last else self._last + _TICK
                self._last = at
                rows.append({**_row(replace(e, recorded_at=at)), "scope": self._scope_for_write(e)})
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            for attempt in range(5):
                try:
                    # merge: a ledger written before scopes existed gains the column (old rows: null)
                    write_deltalake(self._open(), table, mode="append", schema_mode="merge")
                    return
                except (CommitFailedError, DeltaError) as e:  # a concurrent first commit or append race
                    self._table = None
                    if attempt == 4:
                        raise BackfillError(
                            f"cannot write the backfill ledger at {self.location}: {e}"
                        ) from e
                    time.sleep(0.05 * 2**attempt)

    def _scope_for_write(self, e: LedgerEntry) -> str | None:
        if self._scope is None:
            return None
        scope = self._scope(e.view, e.target)
        if scope is None:
            raise BackfillError(f"no ledger scope for {e.target.value} entries of feature view {e.view!r}")
        return scope

    def forget(self, views: Iterable[str], target: Target) -> None:
        """Drop every entry of ``views`` for ``target`` in this ledger's scope (e.g. the online entries
        after a teardown emptied the online store, so watermarks and ``--resume`` no longer trust
        them). Entries of other environments and tenants stay."""
        names = sorted(set(views))
        if not names:
            return
        with self._lock:
            try:
                table = DeltaTable(self.location)
                scoped = "scope" in table.schema().to_arrow().names
                conditions = []
                for name in names:
                    where = f"view = {_quote(name)}"
                    if self._scope is None:
                        where += " AND scope IS NULL" if scoped else ""
                    else:
                        scope = self._scope(name, target)
                        if scope is None or not scoped:
                            continue
                        where += f" AND scope = {_quote(scope)}"
                    conditions.append(f"({where})")
                if conditions:
                    table.delete(f"target = '{target.value}' AND ({' OR '.join(conditions)})")
            except TableNotFoundError:
                return
            finally:
                self._table = None

    def compact(self) -> None:
        """Fold the many one-row files into few (called after runs; ledger reads stay fast)."""
        compact_small_files(self.location, _COMPACT_AT_FILES, "ledger")

    # -- reads ---------------------------------------------------------------------------------
    def entries(self, view: str | None = None, target: Target | None = None) -> list[LedgerEntry]:
        """Entries in recording order (optionally of one view / target), of this ledger's scopes only."""
        table = self._read()
        with self._lock:
            self._seen(table)  # every scope's entries: the recording clock is shared
        if view is not None:
            table = table.filter(pc.field("view") == view)
        if target is not None:
            table = table.filter(pc.field("target") == target.value)
        table = self._own(table)
        table = table.sort_by([("recorded_at", "ascending")])
        return [_entry(r) for r in table.to_pylist()]

    def _own(self, table: pa.Table) -> pa.Table:
        """The rows of this ledger's scopes."""
        if self._scope is None:
            return table.filter(pc.field("scope").is_null())
        pairs = {(v, t) for v, t in zip(table["view"].to_pylist(), table["target"].to_pylist(), strict=True)}
        scopes = {(v, t): self._scope(v, Target(t)) for v, t in pairs}
        keep = [
            scopes[(v, t)] is not None and scopes[(v, t)] == s
            for v, t, s in zip(
                table["view"].to_pylist(),
                table["target"].to_pylist(),
                table["scope"].to_pylist(),
                strict=True,
            )
        ]
        return table.filter(pa.array(keep, pa.bool_()))

    def _read(self) -> pa.Table:
        try:
            dataset = DeltaTable(self.location).to_pyarrow_dataset()
        except TableNotFoundError:
            return SCHEMA.empty_table()
        table = dataset.to_table()
        if "scope" not in table.column_names:  # written before scopes existed
            table = table.append_column("scope", pa.nulls(table.num_rows, pa.string()))
        # Cast first: files rewritten by a delete (``forget``) may hold string_view columns.
        return table.select(SCHEMA.names).cast(SCHEMA)

    def _seen(self, table: pa.Table) -> None:
        """Move the recording clock past ``table``'s entries (caller holds the lock)."""
        latest = pc.max(table["recorded_at"]).as_py() if table.num_rows else None
        if latest is not None and (self._last is None or latest > self._last):
            self._last = latest

    def views(self) -> list[str]:
        return sorted({e.view for e in self.entries()})

    def latest(self, view: str, target: Target, kinds: set[Kind] | None = None) -> list[LedgerEntry]:
        """The latest entry of each distinct chunk ``[start, end)`` (optionally among ``kinds``)."""
        last: dict[tuple[datetime, datetime], LedgerEntry] = {}
        for e in self.entries(view, target):
            if kinds is None or e.kind in kinds:
                last[(e.start, e.end)] = e
        return sorted(last.values(), key=lambda e: (e.start, e.end))

    def done(self, view: str, target: Target, kinds: set[Kind] | None = None) -> list[Interval]:
        """Merged "done" coverage (optionally from entries of ``kinds`` only); see the module docstring."""
        return coverage(e for e in self.entries(view, target) if kinds is None or e.kind in kinds)

    def status(self, view: str, target: Target) -> ViewStatus:
        history = self.entries(view, target)
        done = coverage(history)
        # The latest entry of each chunk not (or no longer) covered: a failed chunk later covered by a
        # done one (e.g. a rerun with another chunk size) is settled.
        pending = tuple(
            e for e in self.latest(view, target) if e.status != Status.DONE and subtract(e.interval, done)
        )
        mark = None
        if target == Target.ONLINE:
            mark = _watermark([e for e in history if e.kind in (Kind.MATERIALIZE, Kind.INCREMENTAL)])
        return ViewStatus(view, target, tuple(done), pending, mark, history[-1] if history else None)


def coverage(entries: Iterable[LedgerEntry]) -> list[Interval]:
    """Done coverage of ``entries`` (in recording order): done adds its interval, anything else removes it."""
    done: list[Interval] = []
    for e in entries:
        done = merge([*done, e.interval]) if e.status == Status.DONE else remove(done, e.interval)
    return done


def _watermark(entries: list[LedgerEntry]) -> datetime | None:
    """Where the next incremental materialization starts: the end of what is done, pulled back to
    the first gap in it after the first incremental chunk.

    Only successful chunks move it; a hole left by a planned, failed, rejected or interrupted chunk,
    or a range never materialized between incremental runs and a later manual ``fs materialize``,
    keeps it at the hole (resume from the last completed chunk). Backfills do not move it: re-writing
    history says nothing about what is new.
    """
    done = coverage(entries)
    if not done:
        return None
    incremental = [e.start for e in entries if e.kind == Kind.INCREMENTAL]
    # Holes only: a planned/running/failed entry whose range a later done entry covers again (every
    # completed run first records its chunks ``planned``) is superseded and holds nothing back.
    unfinished = [
        hole.start for e in entries if e.status != Status.DONE for hole in subtract(e.interval, done)
    ]
    since = min(incremental) if incremental else min(unfinished, default=done[-1].end)
    for iv in done:  # the first time at or after ``since`` that is not done
        if iv.end < since:
            continue
        if iv.start > since:
            break
        since = iv.end
    return min(since, done[-1].end)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _row(e: LedgerEntry) -> dict:
    return {
        "run_id": e.run_id,
        "view": e.view,
        "target": e.target.value,
        "kind": e.kind.value,
        "start": e.start,
        "end": e.end,
        "status": e.status.value,
        "holder": e.holder,
        "recorded_at": e.recorded_at,
        "rows_in": e.rows_in,
        "rows_written": e.rows_written,
        "rows_skipped": e.rows_skipped,
        "source_version": e.source_version,
        "target_version": e.target_version,
        "validation": e.validation,
        "message": e.message,
    }


def _entry(r: dict) -> LedgerEntry:
    return LedgerEntry(
        run_id=r["run_id"],
        view=r["view"],
        target=Target(r["target"]),
        kind=Kind(r["kind"]),
        start=r["start"],
        end=r["end"],
        status=Status(r["status"]),
        holder=r["holder"],
        recorded_at=r["recorded_at"],
        rows_in=r["rows_in"] or 0,
        rows_written=r["rows_written"] or 0,
        rows_skipped=r["rows_skipped"] or 0,
        source_version=r["source_version"],
        target_version=r["target_version"],
        validation=r["validation"],
        message=r["message"] or "",
    )
