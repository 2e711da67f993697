"""`fs apply` refuses definitions that would fail later (issue #21.4, #21.10): a view its Delta table
cannot serve, an on-demand view broken by retyping one of its inputs. One line per problem, nothing
applied. Real Delta tables (seeded example data), the machine's Redis."""

from __future__ import annotations

import pytest

from fs_platform.cli.main import main
from fs_platform.errors import FsError, RepoError, SchemaMismatchError
from fs_platform.platform import Platform
from tests.foundation.conftest import seeded_copy

pytestmark = pytest.mark.redis

VIEW = "merchant_risk_daily"


@pytest.fixture
def applied_repo(tmp_path):
    """A copy of the example repo on small seeded data, applied."""
    with seeded_copy(tmp_path, customers=20, merchants=4, days=2) as repo:
        yield repo


def _edit(repo, old: str, new: str) -> None:
    path = repo / "features.py"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _registered_features(repo, view: str) -> dict[str, str]:
    return {f.name: str(f.dtype) for f in Platform(repo).store.get_feature_view(view).features}


def test_apply_refuses_a_view_its_delta_table_cannot_serve_one_line_per_problem(applied_repo, capsys):
    before = _registered_features(applied_repo, VIEW)
    _edit(applied_repo, '_f("txn_volume_1d", Int64,', '_f("txn_volume_1d", String,')  # bigint in Delta
    _edit(
        applied_repo,
        "    ],\n    source=merchant_risk_source,",
        '        _f("refund_rate_1d", Float64, "Refunds / settled transactions over the last day."),\n'
        "    ],\n    source=merchant_risk_source,",
    )  # no such column
    where = f"feature view {VIEW!r} (source 'merchant_risk_daily_source')"
    expected = [
        f"{where}: feature 'txn_volume_1d' is String in the view but bigint in Delta",
        f"{where}: feature 'refund_rate_1d' has no Delta column 'refund_rate_1d'",
    ]
    with pytest.raises(SchemaMismatchError) as api:
        Platform(applied_repo).apply()
    assert api.value.problems == expected
    assert _registered_features(applied_repo, VIEW) == before  # nothing applied

    capsys.readouterr()  # what the API call printed (Feast's warnings) is not the CLI's output
    assert main(["--repo", str(applied_repo), "apply"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[:2] == [f"error: {p}" for p in expected]
    assert len(err) == 3 and err[2].startswith("hint: ") and "nothing was applied" in err[2]
    assert _registered_features(applied_repo, VIEW) == before


def test_retyping_an_input_of_an_on_demand_view_names_the_view_and_the_feature(applied_repo, capsys):
    """Feast runs the transformation on sample values of the declared types ('hello world' for a
    string): its error alone ("could not convert string to float") named neither (#21.10)."""
    _edit(
        applied_repo,
        'Field(name="amount", dtype=Float64, description="Amount (USD) of the payment being scored.")',
        'Field(name="amount", dtype=String, description="Amount (USD) of the payment being scored.")',
    )
    with pytest.raises(RepoError) as api:
        Platform(applied_repo).apply()
    message = str(api.value)
    assert "on-demand feature view 'txn_amount_vs_history'" in message
    assert "retyped input transaction_request:amount Float64 -> String" in message
    assert "could not convert string to float" in message
    assert main(["--repo", str(applied_repo), "apply"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    registered = Platform(applied_repo).store.get_on_demand_feature_view("txn_amount_vs_history")
    assert {
        f.name: str(f.dtype) for f in registered.source_request_sources["transaction_request"].schema
    } == {"amount": "Float64"}  # nothing applied
    assert isinstance(api.value, FsError)


def test_apply_refuses_an_aggregation_view_whose_events_lack_an_input_column(applied_repo, capsys):
    _edit(
        applied_repo,
        'Aggregation("amount", "mean", ["24h"], name="avg_amount"',
        'Aggregation("amount_usd", "mean", ["24h"], name="avg_amount"',
    )
    with pytest.raises(SchemaMismatchError) as api:
        Platform(applied_repo).apply()
    [problem] = api.value.problems
    assert problem.startswith(
        "aggregation view 'customer_txn_aggregates' (source 'payments_source'): column 'amount_usd' is "
        "missing from the raw events' Delta table (has ['amount', "
    )
    assert main(["--repo", str(applied_repo), "apply"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == f"error: {problem}"
