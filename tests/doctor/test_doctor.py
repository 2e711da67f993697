"""fs doctor finds each injected problem on real stores, proposes the right action, the approved plan
fixes it, the audit log records it, and rollback restores the previous state (issue #16.1-4)."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

from fs_platform.backfill.model import Target
from fs_platform.backfill.runner import Backfiller
from fs_platform.cli.main import app
from fs_platform.doctor import Severity, doctor, ops
from fs_platform.plugins.delta.tables import resolve_location
from tests.doctor.conftest import VIEW, dead_lease, failed_chunk, leftover_keys, online_client, view_keys

pytestmark = [pytest.mark.redis]
runner = CliRunner()


def _findings(report, check, subject=None):
    return [f for f in report.findings if f.check == check and (subject is None or f.subject == subject)]


def _events(platform):
    return [(e.event, e.kind) for e in ops.log_events(platform)]


def test_stale_view_is_rematerialized_through_an_approved_plan_and_rolled_back(make_repo, tmp_path):
    platform = make_repo()
    base = ["--repo", str(platform.repo_path)]
    plan_file = tmp_path / "plan.json"
    found = runner.invoke(
        app,
        [
            *base,
            "doctor",
            "--views",
            VIEW,
            "--check",
            "freshness",
            "--plan",
            str(plan_file),
            "--proposer",
            "alice",
            "--json",
        ],
    )
    assert found.exit_code == 3, found.output  # a breach
    report = json.loads(found.output)
    (stale,) = [f for f in report["findings"] if f["subject"] == VIEW]
    assert stale["severity"] == "warning" and "stale online" in stale["message"]
    assert [a["kind"] for a in stale["actions"]] == ["rematerialize"]
    plan = json.loads(plan_file.read_text())
    assert plan["proposer"] == "alice" and plan["env"] == "dev" and len(plan["actions"]) == 1
    assert view_keys(platform) == []

    dry = runner.invoke(app, [*base, "ops", "apply", str(plan_file), "--dry-run", "--json"])
    assert dry.exit_code == 0 and json.loads(dry.output)["results"][0]["status"] == "needs_approval"
    assert view_keys(platform) == []
    applied = runner.invoke(app, [*base, "ops", "apply", str(plan_file), "--approved-by", "bob", "--json"])
    assert applied.exit_code == 0, applied.output
    (result,) = json.loads(applied.output)["results"]
    assert result["status"] == "executed" and result["changed"]["rows_written"] > 0
    assert (
        0 < len(view_keys(platform)) <= result["changed"]["rows_written"]
    )  # a key per entity, once per chunk
    assert (
        _findings(doctor(platform, [VIEW], checks=["freshness"]), "freshness", VIEW)[0].severity
        == Severity.OK
    )

    again = runner.invoke(app, [*base, "ops", "apply", str(plan_file), "--approved-by", "bob", "--json"])
    assert json.loads(again.output)["results"][0]["status"] == "skipped"  # idempotent: already executed

    log = runner.invoke(app, [*base, "ops", "log", "--since", "-1h", "--json"])
    events = json.loads(log.output)
    assert [e["event"] for e in events] == ["proposed", "approved", "executed"]
    assert events[1]["actor"] == "bob" and events[1]["details"]["proposer"] == "alice"
    assert events[2]["details"]["changed"]["rows_written"] == result["changed"]["rows_written"]

    action_id = result["action"]["id"]
    back = runner.invoke(app, [*base, "ops", "rollback", action_id, "--approved-by", "bob", "--json"])
    assert back.exit_code == 0, back.output
    assert view_keys(platform) == []  # the online state before the action: nothing
    assert (
        _findings(doctor(platform, [VIEW], checks=["freshness"]), "freshness", VIEW)[0].severity
        == Severity.WARNING
    )
    # The ledger no longer counts the range as done: the next incremental run redoes it.
    assert Backfiller(platform).ledger.done(VIEW, Target.ONLINE) == []
    assert _events(platform)[-1] == ("rolled_back", "rematerialize")


def test_dead_lease_and_failed_chunk_are_released_and_resumed_then_rolled_back(make_repo):
    platform = make_repo()
    lease_key = dead_lease(platform)
    start, end = failed_chunk(platform)
    report = doctor(platform, checks=["ledger"])
    kinds = sorted(a.kind for a in report.actions)
    assert kinds == ["release_lease", "resume_backfill", "resume_backfill"], report.to_dict()
    assert report.worst == Severity.WARNING
    assert any("dead lease" in f.message for f in report.findings)
    # The online chunk is still "running", but the lease of its run is dead: interrupted, not running.
    assert any(f.evidence.get("status") == "running" and "interrupted" in f.message for f in report.findings)

    location = resolve_location(platform.feature_view(VIEW), platform.store.config)
    version_before = DeltaTable(location).version()
    plan = ops.make_plan(platform, report, proposer="alice")
    assert plan.actions[0].kind == "release_lease"  # before the runs it would block
    results = ops.apply(platform, plan, approver="bob")
    assert [r.status for r in results] == ["executed"] * 3, [(r.status, r.message) for r in results]
    bf = Backfiller(platform)
    assert bf.leases.holder(VIEW) is None
    assert (
        bf.ledger.status(VIEW, Target.OFFLINE).pending == ()
        and bf.ledger.status(VIEW, Target.ONLINE).pending == ()
    )
    assert DeltaTable(location).version() > version_before
    assert view_keys(platform)
    after = doctor(platform, checks=["ledger"])
    assert after.worst == Severity.OK and not after.actions

    by_kind = {r.action.kind + r.action.params.get("to", ""): r for r in results}
    ops.rollback(platform, by_kind["resume_backfilloffline"].action.id, approver="bob")
    ops.rollback(platform, by_kind["resume_backfillonline"].action.id, approver="bob")
    ops.rollback(platform, by_kind["release_lease"].action.id, approver="bob")
    table = DeltaTable(location)
    assert table.history(1)[0]["operation"] == "RESTORE"
    assert view_keys(platform) == []
    assert online_client(platform).client.get(lease_key) is not None  # the old lease is back
    st = bf.ledger.status(VIEW, Target.OFFLINE)
    assert [(e.start, e.end) for e in st.pending] == [(start, end)]  # to be redone again
    second = ops.rollback(platform, by_kind["release_lease"].action.id, approver="bob")
    assert second.status == "skipped"  # once


def test_leftover_keys_of_a_deleted_view_are_deleted_and_restored(make_repo):
    platform = make_repo()
    keys = leftover_keys(platform, "retired_view", 6)
    client = online_client(platform).client
    before = {k: (client.dump(k), client.ttl(k) > 0) for k in keys}
    (finding,) = _findings(doctor(platform, checks=["online_store"]), "online_store", "retired_view")
    assert finding.severity == Severity.WARNING and finding.evidence["keys"] == 6
    (action,) = finding.actions
    assert action.kind == "delete_view_keys" and action.classification.value == "reversible"

    report = doctor(platform, checks=["online_store"])
    plan = ops.make_plan(platform, report, proposer="alice")
    (done,) = ops.apply(platform, plan, approver="bob")
    assert done.status == "executed" and done.changed["keys_deleted"] == 6
    assert not any(client.exists(k) for k in keys)
    assert _findings(doctor(platform, checks=["online_store"]), "online_store", "retired_view") == []

    ops.rollback(platform, done.action.id, approver="bob")
    assert {k: (client.dump(k), client.ttl(k) > 0) for k in keys} == before  # values and expiries back
    # The audit log never holds key names (they carry entity ids) nor values.
    text = json.dumps([e.to_dict() for e in ops.log_events(platform)], default=str)
    assert "customer_id=" not in text


def test_delta_schema_drift_is_restored_to_the_last_fitting_version_and_rolled_back(make_repo):
    platform = make_repo()
    location = resolve_location(platform.feature_view(VIEW), platform.store.config)
    table = DeltaTable(location).to_pyarrow_table()
    write_deltalake(
        location, table.drop_columns(["txn_amount_24h"]), mode="overwrite", schema_mode="overwrite"
    )
    drifted = DeltaTable(location).version()
    report = doctor(platform, checks=["schema"])
    (finding,) = _findings(report, "schema", VIEW)
    assert finding.severity == Severity.ERROR and "txn_amount_24h" in " ".join(finding.evidence["problems"])
    (action,) = finding.actions
    assert action.kind == "restore_delta" and action.params["version"] == drifted - 1
    assert report.worst == Severity.ERROR

    (done,) = ops.apply(platform, ops.make_plan(platform, report, proposer="alice"), approver="bob")
    assert done.status == "executed"
    assert "txn_amount_24h" in DeltaTable(location).schema().to_arrow().names
    assert _findings(doctor(platform, checks=["schema"]), "schema", VIEW) == []

    ops.rollback(platform, done.action.id, approver="bob")
    assert "txn_amount_24h" not in DeltaTable(location).schema().to_arrow().names  # the drifted state again


def test_recorded_validation_failure_proposes_a_read_only_rerun(make_repo):
    from fs_platform.governance.validate import CheckResult, ResultLog, ValidationResult
    from fs_platform.timeutil import utcnow

    platform = make_repo()
    ResultLog(platform.repo_path).append(
        ValidationResult(
            view=VIEW,
            mode="strict",
            origin="backfill",
            run_id="r1",
            checked_at=utcnow(),
            rows=10,
            passed=False,
            suite=None,
            checks=[
                CheckResult(
                    "expect_column_values_to_not_be_null", "txn_count_1h", False, 3, 30.0, samples=[None]
                )
            ],
        )
    )
    (finding,) = _findings(doctor(platform, checks=["validation"]), "validation", VIEW)
    assert finding.severity == Severity.WARNING
    assert finding.evidence["failed_checks"] == ["expect_column_values_to_not_be_null(txn_count_1h)"]
    (action,) = finding.actions
    assert action.kind == "rerun_validation" and action.classification.value == "read_only"


def test_cli_doctor_exit_codes_and_human_output(make_repo):
    platform = make_repo()
    base = ["--repo", str(platform.repo_path)]
    ok = runner.invoke(app, [*base, "doctor", "--check", "ledger", "--check", "schema"])
    assert ok.exit_code == 0, ok.output
    assert "every view's Delta table fits the view" in ok.output
    leftover_keys(platform)
    warn = runner.invoke(app, [*base, "doctor", "--check", "online_store"])
    assert warn.exit_code == 3 and "delete_view_keys" in warn.output and "--plan FILE" in warn.output
    bad = runner.invoke(app, [*base, "doctor", "--check", "nope"])
    assert bad.exit_code == 2 or "unknown check" in str(bad.exception)


def test_unreachable_online_store_is_an_error_and_exit_1(make_repo):
    import yaml

    platform = make_repo()
    path = platform.repo_path / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["online_store"]["url"] = "redis://127.0.0.1:1/0"  # nothing listens there
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(
        app, ["--repo", str(platform.repo_path), "doctor", "--check", "online_store", "--json"]
    )
    assert result.exit_code == 1, result.output
    (finding,) = json.loads(result.output)["findings"]
    assert finding["severity"] == "error" and finding["subject"] == "online_store"


@pytest.mark.slow
def test_deep_parity_breach_is_rematerialized_and_rolled_back(make_repo):
    platform = make_repo()
    view = "merchant_risk_daily"  # tier 1, nothing materialized yet: online misses every sampled key
    (finding,) = _findings(doctor(platform, [view], checks=["parity"]), "parity", view)
    assert finding.severity == Severity.WARNING and finding.evidence["breaching"] > 0
    assert finding.evidence["classes"].get("missing_online", 0) > 0 and "missing_online" in finding.message
    (action,) = finding.actions
    assert action.kind == "rematerialize"
    plan = ops.make_plan(platform, doctor(platform, [view], checks=["parity"]), proposer="alice")
    (done,) = ops.apply(platform, plan, approver="bob")
    assert done.status == "executed", done.message
    (ok,) = _findings(doctor(platform, [view], checks=["parity"]), "parity", view)
    assert ok.severity == Severity.OK, ok.evidence
    ops.rollback(platform, done.action.id, approver="bob")
    assert view_keys(platform, view) == []
    (again,) = _findings(doctor(platform, [view], checks=["parity"]), "parity", view)
    assert again.severity == Severity.WARNING
