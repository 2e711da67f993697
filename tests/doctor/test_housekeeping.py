"""Online memory and expiry checks, catalog pages, Delta compaction and vacuum, and the retention of
rollback snapshots, on real Redis and Delta (issue #16)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from fs_platform.doctor import Severity, doctor, ops
from fs_platform.doctor.model import ActionClass, OpsPlan
from fs_platform.errors import OpsError
from fs_platform.plugins.delta.tables import resolve_location
from fs_platform.timeutil import utcnow
from tests.doctor.conftest import VIEW, leftover_keys, online_client

pytestmark = [pytest.mark.redis]


def _findings(report, check, subject=None):
    return [f for f in report.findings if f.check == check and (subject is None or f.subject == subject)]


def _set_ops(platform, **settings):
    """``ops:`` settings in the repo's feature_store.yaml; a fresh Platform reads them."""
    from fs_platform.platform import Platform

    path = platform.repo_path / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["ops"] = {**config.get("ops", {}), **settings}
    path.write_text(yaml.safe_dump(config))
    return Platform(platform.repo_path)


def _person_plan(platform, kind: str, params: dict) -> OpsPlan:
    from fs_platform.doctor.actions import new_action

    return OpsPlan(
        "plan-test",
        utcnow().isoformat(),
        platform.project,
        platform.env,
        "alice",
        "person",
        [new_action(kind, params, "test")],
    )


def _rows(platform, view=VIEW, n=4, persistent=True, hours_old=(1, 1, 48, 48)):
    """``n`` rows of ``view`` written as a writer that bypasses the store would: no expiry."""
    state = online_client(platform)
    before, after = state.layout.view_affixes(view)
    keys = []
    for i in range(n):
        event_us = int((utcnow() - timedelta(hours=hours_old[i])).timestamp() * 1e6)
        key = f"{before}customer_id={900 + i}{after}"
        state.client.set(key, f"[{event_us},{event_us},0,{i}]".encode(), ex=None if persistent else 3600)
        keys.append(key)
    return keys


def test_keys_without_expiry_get_the_stores_expiry_and_rollback_makes_them_persistent_again(make_repo):
    platform = make_repo()
    keys = _rows(platform)  # customer_txn_rolling has a 1-day ttl: two rows are already past it
    client = online_client(platform).client
    report = doctor(platform, [VIEW], checks=["online_expiry", "online_memory"])
    (finding,) = _findings(report, "online_expiry", VIEW)
    assert finding.severity == Severity.WARNING and finding.evidence["persistent_estimated"] == 4
    (action,) = finding.actions
    assert action.kind == "expire_view_keys" and action.classification == ActionClass.REVERSIBLE
    (memory,) = _findings(report, "online_memory", VIEW)
    assert memory.evidence["keys"] == 4 and memory.evidence["bytes_estimated"] > 0

    (done,) = ops.apply(platform, ops.make_plan(platform, report, proposer="alice"), approver="bob")
    assert done.status == "executed", done.message
    assert done.changed["keys_given_expiry"] == 4 and done.changed["keys_expired_at_once"] == 2
    assert [client.exists(k) for k in keys] == [1, 1, 0, 0]  # past the ttl: gone, as the store does
    assert all(0 < client.pttl(k) <= 23 * 3600 * 1000 for k in keys[:2])  # event time + 1 day
    (ok,) = _findings(doctor(platform, [VIEW], checks=["online_expiry"]), "online_expiry")
    assert ok.severity == Severity.OK

    ops.rollback(platform, done.action.id, approver="bob")
    assert [client.pttl(k) for k in keys] == [-1] * 4  # all four back, persistent as before


def test_catalog_pages_out_of_date_are_regenerated_and_rolled_back(make_repo, tmp_path):
    from fs_platform.governance.catalog import build_catalog, write_docs

    platform = make_repo()
    pages = tmp_path / "catalog"
    write_docs(build_catalog(platform.store), pages)
    platform = _set_ops(platform, catalog_docs=str(pages))
    (ok,) = _findings(doctor(platform, checks=["catalog"]), "catalog")
    assert ok.severity == Severity.OK
    edited = pages / f"{VIEW}.md"
    edited.write_text("hand-edited\n")
    (pages / "index.md").unlink()
    report = doctor(platform, checks=["catalog"])
    (finding,) = _findings(report, "catalog")
    assert finding.severity == Severity.WARNING and finding.evidence["changed"] == [
        "customer_txn_rolling.md",
        "index.md",
    ]
    (done,) = ops.apply(platform, ops.make_plan(platform, report, proposer="alice"), approver="bob")
    assert done.status == "executed" and done.changed["pages_changed"] == 2
    assert _findings(doctor(platform, checks=["catalog"]), "catalog")[0].severity == Severity.OK
    ops.rollback(platform, done.action.id, approver="bob")
    assert edited.read_text() == "hand-edited\n" and not (pages / "index.md").exists()


def _small_appends(platform, n=4):
    location = resolve_location(platform.feature_view(VIEW), platform.store.config)
    table = DeltaTable(location).to_pyarrow_table()
    for i in range(n):
        write_deltalake(location, table.slice(i, 1), mode="append")
    return location


def test_compact_delta_folds_small_files_and_rollback_restores_the_version(make_repo):
    platform = make_repo()
    location = _small_appends(platform)
    rows, files = DeltaTable(location).to_pyarrow_table().num_rows, len(DeltaTable(location).file_uris())
    (done,) = ops.apply(platform, _person_plan(platform, "compact_delta", {"view": VIEW}), approver="bob")
    assert done.status == "executed", done.message
    assert done.changed["files_before"] == files > done.changed["files_after"]
    assert DeltaTable(location).to_pyarrow_table().num_rows == rows  # same rows
    ops.rollback(platform, done.action.id, approver="bob")
    table = DeltaTable(location)
    assert len(table.file_uris()) == files and table.history(1)[0]["operation"] == "RESTORE"


def test_vacuum_keeps_the_rollback_window_and_has_no_rollback(make_repo):
    platform = make_repo()
    location = _small_appends(platform)
    DeltaTable(location).optimize.compact()  # the small files are now unreferenced, removed just now
    # Default window (14 days): nothing removed so recently is deleted; a shorter ask is refused.
    (kept,) = ops.apply(platform, _person_plan(platform, "vacuum_delta", {"view": VIEW}), approver="bob")
    assert kept.status == "skipped", kept.message
    (short,) = ops.apply(
        platform, _person_plan(platform, "vacuum_delta", {"view": VIEW, "retention_hours": 1}), approver="bob"
    )
    assert short.status == "refused" and short.rule == "retention"
    # Only with the window and the table's own retention at zero do the files go.
    platform = _set_ops(platform, rollback_retention_days=0)
    (table_rule,) = ops.apply(
        platform, _person_plan(platform, "vacuum_delta", {"view": VIEW}), approver="bob"
    )
    assert table_rule.status == "refused" and table_rule.rule == "retention"  # the table's own 7 days hold
    DeltaTable(location).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 seconds"}
    )
    (done,) = ops.apply(platform, _person_plan(platform, "vacuum_delta", {"view": VIEW}), approver="bob")
    assert done.status == "executed" and done.changed["files_deleted"] >= 4
    with pytest.raises(OpsError, match="has no rollback: none: vacuum deletes files"):
        ops.rollback(platform, done.action.id, approver="bob")


def test_snapshots_older_than_the_retention_are_pruned_and_audited(make_repo):
    platform = make_repo()
    leftover_keys(platform, "retired_view", 3)
    report = doctor(platform, checks=["online_store"])
    (done,) = ops.apply(platform, ops.make_plan(platform, report, proposer="alice"), approver="bob")
    snapshots = ops.Ops(platform).context.snapshots
    files = sorted(p.name for p in snapshots.iterdir() if p.name.startswith(done.action.id))
    assert files == [f"{done.action.id}.keys.parquet", f"{done.action.id}.schemas.json"]
    assert ops.prune(platform) == {}  # younger than 14 days: kept
    old = time.time() - 15 * 86400
    for name in files:
        os.utime(snapshots / name, (old, old))
    assert list(ops.prune(platform, dry_run=True)) == [done.action.id]
    assert (snapshots / files[0]).exists()  # a dry run deletes nothing
    freed = ops.prune(platform)
    assert list(freed) == [done.action.id] and freed[done.action.id] > 0
    assert not any(p.name.startswith(done.action.id) for p in snapshots.iterdir())
    (pruned,) = [e for e in ops.log_events(platform) if e.event == "pruned"]
    assert pruned.action_id == done.action.id and pruned.details["bytes_freed"] == freed[done.action.id]
    with pytest.raises(OpsError, match="snapshot of action .* is missing"):
        ops.rollback(platform, done.action.id, approver="bob")


def test_rollback_is_refused_past_the_retention_window(make_repo):
    platform = make_repo()
    leftover_keys(platform, "retired_view", 2)
    report = doctor(platform, checks=["online_store"])
    (done,) = ops.apply(platform, ops.make_plan(platform, report, proposer="alice"), approver="bob")
    platform = _set_ops(platform, rollback_retention_days=0)
    with pytest.raises(OpsError, match="before the rollback window"):
        ops.rollback(platform, done.action.id, approver="bob")


def test_forward_only_actions_need_approval_like_reversible_ones(make_repo):
    platform = make_repo()
    plan = _person_plan(platform, "vacuum_delta", {"view": VIEW})
    assert plan.actions[0].classification == ActionClass.FORWARD_ONLY
    (r,) = ops.apply(platform, plan, approver=None)
    assert r.status == "refused" and r.rule == "approval_required"
    # A policy written before the class existed still gates it like a reversible action.
    platform = _set_ops(platform, approval_required=["reversible", "irreversible"])
    (r,) = ops.apply(platform, plan, approver=None)
    assert r.status == "refused" and r.rule == "approval_required"
