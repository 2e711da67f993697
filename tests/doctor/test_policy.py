"""Ops policy on real stores: an unapproved prod action, an approver who proposed the plan, an
irreversible action, the rate limit, the kill switch and a plan of another environment are each
refused, the refusal names its rule, and the audit log records it (issue #16.3, #16.4)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from fs_platform.cli.main import app
from fs_platform.doctor import doctor, ops
from fs_platform.doctor.actions import new_action
from fs_platform.doctor.model import OpsPlan
from fs_platform.errors import OpsRefused
from fs_platform.timeutil import utcnow
from tests.doctor.conftest import leftover_keys, online_client

pytestmark = [pytest.mark.redis]


def _plan(platform, *actions, proposer="alice") -> OpsPlan:
    return OpsPlan(
        "plan-test",
        utcnow().isoformat(),
        platform.project,
        platform.env,
        proposer,
        "automation",
        list(actions),
    )


def _delete(view="retired_view"):
    return new_action("delete_view_keys", {"view": view}, "test")


def _refusals(platform):
    return [(e.event, e.rule) for e in ops.log_events(platform) if e.event == "refused"]


def test_prod_needs_an_approver_other_than_the_proposer(prod_repo):
    dev, make_prod = prod_repo
    prod = make_prod()  # prod defaults: reversible needs approval, approver != proposer
    keys = leftover_keys(dev)
    plan = _plan(prod, _delete())
    (unapproved,) = ops.apply(prod, plan, approver=None)
    assert unapproved.status == "refused" and unapproved.rule == "approval_required"
    assert "approval_required" in unapproved.message
    (self_approved,) = ops.apply(prod, plan, approver="Alice")
    assert self_approved.rule == "distinct_approver"
    assert all(online_client(dev).client.exists(k) for k in keys)  # nothing ran
    (approved,) = ops.apply(prod, plan, approver="bob")
    assert approved.status == "executed"
    assert not any(online_client(dev).client.exists(k) for k in keys)
    assert _refusals(prod) == [("refused", "approval_required"), ("refused", "distinct_approver")]
    # In dev (no distinct-approver rule by default) the proposer may approve.
    dev_plan = _plan(dev, _delete("other_view"))
    leftover_keys(dev, "other_view", 2)
    assert ops.apply(dev, dev_plan, approver="alice")[0].status == "executed"


def test_irreversible_actions_are_never_proposed_nor_run(prod_repo):
    dev, make_prod = prod_repo
    prod = make_prod()
    teardown = new_action("teardown", {}, "an edited plan")
    (r,) = ops.apply(prod, _plan(prod, teardown), approver="bob")
    assert r.status == "refused" and r.rule == "irreversible"
    assert dev.store.list_feature_views()  # nothing torn down
    # Automation drops it from a plan it writes.
    report = doctor(dev, checks=["ledger"])
    forged = replace(report, findings=[replace(report.findings[0], actions=(teardown,))])
    assert ops.make_plan(dev, forged, proposer="alice").actions == []


def test_rate_limit_refuses_once_the_hour_is_used_up(prod_repo):
    dev, make_prod = prod_repo
    prod = make_prod(rate_limit_per_hour=1)
    leftover_keys(dev, "view_a", 2)
    leftover_keys(dev, "view_b", 2)
    first, second = ops.apply(prod, _plan(prod, _delete("view_a"), _delete("view_b")), approver="bob")
    assert first.status == "executed"
    assert (
        second.status == "refused"
        and second.rule == "rate_limit"
        and "rate_limit_per_hour: 1" in second.message
    )


def test_kill_switch_refuses_everything_from_config_or_environment(prod_repo, monkeypatch):
    dev, make_prod = prod_repo
    keys = leftover_keys(dev)
    plan = _plan(dev, _delete())
    monkeypatch.setenv("FS_OPS_KILL_SWITCH", "1")
    (r,) = ops.apply(dev, plan, approver="bob")
    assert r.status == "refused" and r.rule == "kill_switch"
    monkeypatch.delenv("FS_OPS_KILL_SWITCH")
    prod = make_prod(kill_switch=True)
    (r,) = ops.apply(prod, _plan(prod, _delete()), approver="bob")
    assert r.rule == "kill_switch"
    assert all(online_client(dev).client.exists(k) for k in keys)


def test_a_plan_for_another_environment_is_refused_and_the_cli_names_the_rule(prod_repo, tmp_path):
    dev, make_prod = prod_repo
    leftover_keys(dev)
    plan_file = tmp_path / "plan.json"
    runner = CliRunner()
    base = ["--repo", str(dev.repo_path)]
    wrote = runner.invoke(
        app, [*base, "doctor", "--check", "online_store", "--plan", str(plan_file), "--proposer", "alice"]
    )
    assert wrote.exit_code == 3, wrote.output
    make_prod()
    applied = runner.invoke(
        app, [*base, "--env", "prod", "ops", "apply", str(plan_file), "--approved-by", "bob", "--json"]
    )
    assert applied.exit_code == 3, applied.output
    (r,) = json.loads(applied.output)["results"]
    assert r["status"] == "refused" and r["rule"] == "env_mismatch"
    unapproved = runner.invoke(app, [*base, "ops", "apply", str(plan_file), "--no-input"])
    assert unapproved.exit_code == 3 and "approval_required" in unapproved.output


def test_rollback_needs_an_approver_where_the_class_does(prod_repo):
    dev, make_prod = prod_repo
    prod = make_prod()
    leftover_keys(dev)
    (done,) = ops.apply(prod, _plan(prod, _delete()), approver="bob")
    with pytest.raises(OpsRefused) as refused:
        ops.rollback(prod, done.action.id, approver=None)
    assert refused.value.rule == "approval_required"
    assert ops.rollback(prod, done.action.id, approver="carol").status == "rolled_back"


def test_cli_interactive_approval_and_human_tables(make_repo, tmp_path, monkeypatch):
    from fs_platform.cli import approval

    platform = make_repo()
    base = ["--repo", str(platform.repo_path)]
    runner = CliRunner()
    keys = leftover_keys(platform)
    plan_file = tmp_path / "plan.json"
    runner.invoke(
        app, [*base, "doctor", "--check", "online_store", "--plan", str(plan_file), "--proposer", "ci"]
    )
    monkeypatch.setattr(approval, "interactive", lambda: True)  # a person at the terminal
    monkeypatch.setattr(approval, "user", lambda: "carol")
    declined = runner.invoke(app, [*base, "ops", "apply", str(plan_file)], input="n\n")
    assert (
        declined.exit_code == 3
        and "Approve 1 action(s)" in declined.output
        and "approval_required" in declined.output
    )
    assert all(online_client(platform).client.exists(k) for k in keys)
    accepted = runner.invoke(app, [*base, "ops", "apply", str(plan_file)], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "executed" in accepted.output and "keys_deleted=5" in accepted.output
    log = runner.invoke(app, [*base, "--wide", "ops", "log"])
    assert log.exit_code == 0 and "carol" in log.output and "approval_requ" in log.output
    (approved,) = [e for e in ops.log_events(platform) if e.event == "approved"]
    assert approved.actor == "carol" and approved.details["proposer"] == "ci"
