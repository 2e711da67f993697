"""`fs apply` refuses ungoverned definitions: one line per problem, exit 1, nothing applied."""

import re

from fs_platform import repo as repo_mod
from fs_platform.cli.main import main
from fs_platform.policy import check_repo


def _edit(repo, old, new, count=1):
    path = repo / "features.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


def test_example_repo_passes_the_policy(example_repo):
    assert check_repo(repo_mod.parse(example_repo)) == []


def test_apply_refuses_a_view_without_owner_and_applies_nothing(example_repo, capsys):
    _edit(
        example_repo,
        'description="Daily merchant risk statistics (chargebacks, approvals, volume).",'
        "\n    owner=RISK_TEAM,",
        'description="Daily merchant risk statistics (chargebacks, approvals, volume).",',
    )
    code = main(["--repo", str(example_repo), "apply"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["error: FeatureView 'merchant_risk_daily': missing owner (set owner='team@example.com')"]
    assert not (example_repo / "data" / "registry.db").exists()


def test_every_problem_is_reported_on_its_own_line(example_repo, capsys):
    _edit(
        example_repo,
        'tags={"team": "fraud", "tier": "2", "freshness_sla": "7d"}',
        'tags={"team": "fraud", "tier": "2"}',
    )
    _edit(example_repo, '"Days since the account was opened.")', '"")')
    _edit(example_repo, 'pii="pii")', 'pii="secret")')
    code = main(["--repo", str(example_repo), "apply"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert (
        "error: FeatureView 'customer_profile': missing tag 'freshness_sla' (e.g. '15m', '36h', '7d')" in err
    )
    assert "error: FeatureView 'customer_profile' feature 'account_age_days': missing description" in err
    assert any(re.search(r"feature 'email_domain': tag 'pii'='secret' is not one of", line) for line in err)
    assert len(err) == 3


def test_feature_without_pii_class_is_refused(example_repo, capsys):
    _edit(
        example_repo,
        'return Field(name=name, dtype=dtype, description=description, tags={"pii": pii})',
        "return Field(name=name, dtype=dtype, description=description, "
        'tags={} if name == "kyc_level" else {"pii": pii})',
    )
    assert main(["--repo", str(example_repo), "plan"]) == 1
    assert "feature 'kyc_level': missing tag 'pii'" in capsys.readouterr().err
