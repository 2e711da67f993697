"""Promotion between environments (issue #18.4) on one repo whose staging and prod overlays have their
own file registries: the registry diff, the policy and model-version checks, approval through the
ops policy, and the ops audit log."""

from __future__ import annotations

import json

import pytest
from feast import FeatureView

from fs_platform.cli.main import main
from fs_platform.doctor.ops import log_events
from fs_platform.errors import OpsError
from fs_platform.mlops import promote
from fs_platform.mlops.registry import registered_contents, registry_hash
from fs_platform.platform import Platform
from tests.mlops.conftest import drop_keys, seeded_repo

pytestmark = [pytest.mark.redis]


def _registry(name: str) -> dict:
    return {"registry": {"registry_type": "file", "path": f"data/registry-{name}.db"}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mlflow_store):
    """Staging has the repo's definitions applied; prod starts with an older set (no fraud_model_v2)."""
    path, _, prefix = seeded_repo(
        tmp_path_factory.mktemp("promote"), {"staging": _registry("staging"), "prod": _registry("prod")}
    )
    with Platform(path, env="staging") as staging:
        staging.apply()
    with Platform(path, env="prod") as prod:
        older = prod.definitions()
        older.feature_services[:] = [s for s in older.feature_services if s.name != "fraud_model_v2"]
        prod.apply(older)
    yield path
    drop_keys(prefix)


def _hash(repo, env: str) -> str:
    with Platform(repo, env=env) as p:
        return registry_hash(registered_contents(p.store))


def _services(repo, env: str) -> set[str]:
    with Platform(repo, env=env) as p:
        return {s.name for s in registered_contents(p.store).feature_services}


def _promotion_events(repo, promotion_id: str) -> list[str]:
    with Platform(repo, env="prod") as p:
        return [e.event for e in log_events(p) if e.action_id == promotion_id]


def test_proposal_shows_the_diff_and_changes_nothing(repo):
    before = _hash(repo, "prod")
    p = promote.propose(repo, "staging", "prod", proposer="alice")
    assert p.status == "proposed" and p.policy_problems == [] and p.models_checked == 0
    assert [(c.action, c.kind, c.name) for c in p.changes] == [
        ("create", "feature service", "fraud_model_v2")
    ]
    assert p.source_hash == _hash(repo, "staging") and p.target_hash == before
    assert _hash(repo, "prod") == before  # only proposed
    assert _promotion_events(repo, p.promotion_id) == ["proposed"]

    # Not without an approver, nor by its proposer in prod (distinct approver).
    for approver, rule in ((None, "approval_required"), ("alice", "distinct_approver")):
        done = promote.apply(repo, "staging", "prod", promotion_id=p.promotion_id, approver=approver)
        assert (done.status, done.rule) == ("refused", rule)
    assert _hash(repo, "prod") == before

    done = promote.apply(repo, "staging", "prod", promotion_id=p.promotion_id, approver="bob")
    assert done.status == "executed"
    assert _hash(repo, "prod") == _hash(repo, "staging")
    assert _promotion_events(repo, p.promotion_id) == [
        "proposed",
        "refused",
        "refused",
        "approved",
        "executed",
    ]
    with pytest.raises(OpsError, match="already executed"):
        promote.apply(repo, "staging", "prod", promotion_id=p.promotion_id, approver="bob")
    assert promote.propose(repo, "staging", "prod", proposer="alice").status == "nothing_to_promote"


def test_refused_when_a_model_version_needs_a_service_the_target_would_lack(repo, mlflow_store):
    import mlflow

    client = mlflow.MlflowClient(mlflow_store)
    client.create_registered_model("fraud_scorer")
    version = client.create_model_version(
        "fraud_scorer",
        source=str(repo.parent / "model"),
        tags={"feast.feature_service": "fraud_model_v2", "feast.project": "payments"},
    )
    with Platform(repo, env="staging") as staging:  # staging drops the service the model uses
        staging.store.registry.delete_feature_service("fraud_model_v2", staging.project, commit=True)
    try:
        p = promote.propose(repo, "staging", "prod", proposer="alice")
        assert (p.status, p.rule) == ("refused", "model_dependency") and p.models_checked == 1
        assert "fraud_scorer version 1 uses feature service 'fraud_model_v2'" in p.message
        done = promote.apply(repo, "staging", "prod", approver="bob", proposer="alice")
        assert done.status == "refused" and "fraud_model_v2" in _services(repo, "prod")

        # The CLI: one refusal, exit 3, and the refusal in the audit log.
        args = ["--repo", str(repo), "promote", "--from", "staging", "--to", "prod", "--no-input", "--json"]
        assert main(args) == 3

        # Once the model version is archived, the promotion may go.
        client.transition_model_version_stage("fraud_scorer", version.version, "Archived")
        assert promote.propose(repo, "staging", "prod", proposer="alice").status == "proposed"
    finally:
        with Platform(repo, env="staging") as staging:
            staging.apply()  # the service back


def test_refused_when_staging_changed_since_the_proposal_or_breaks_the_policy(repo, capsys):
    with Platform(repo, env="staging") as staging:
        view = staging.store.get_feature_view("merchant_risk_daily")
        staging.store.registry.delete_feature_service("fraud_model_v1", staging.project, commit=True)
    p = promote.propose(repo, "staging", "prod", proposer="alice")
    assert [(c.action, c.name) for c in p.changes] == [("delete", "fraud_model_v1")]
    ungoverned = FeatureView(name="scratch_view", entities=[], schema=view.schema, source=view.batch_source)
    with Platform(repo, env="staging") as staging:
        staging.store.apply([ungoverned])  # no owner, team, tier, descriptions ...
    try:
        done = promote.apply(repo, "staging", "prod", promotion_id=p.promotion_id, approver="bob")
        assert (done.status, done.rule) == ("refused", "changed_since_proposal")
        fresh = promote.propose(repo, "staging", "prod", proposer="alice")
        assert (fresh.status, fresh.rule) == ("refused", "policy")
        assert any(
            "scratch_view" in problem and "missing owner" in problem for problem in fresh.policy_problems
        )

        args = ["--repo", str(repo), "promote", "--from", "staging", "--to", "prod", "--no-input", "--json"]
        assert main(args) == 3
        shown = json.loads(capsys.readouterr().out)
        assert shown["rule"] == "policy" and shown["status"] == "refused"
        assert "scratch_view" not in {
            v.name for v in registered_contents(Platform(repo, env="prod").store).feature_views
        }
    finally:
        with Platform(repo, env="staging") as staging:
            staging.store.delete_feature_view("scratch_view")
            staging.apply()
