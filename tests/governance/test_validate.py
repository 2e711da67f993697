"""Expectation suites catch injected bad data; the strict gate stops the write, warn records it."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from fs_platform import datagen
from fs_platform.cli.main import main
from fs_platform.errors import RepoError, ValidationFailed
from fs_platform.governance import offline
from fs_platform.governance.validate import gate, list_results, validate_offline
from fs_platform.plugins.delta.storage import append

VIEW = "merchant_risk_daily"


@pytest.fixture
def clean(gov) -> pa.Table:
    return datagen.to_arrow(gov.data.merchant_risk_daily.head(60))


def _failed(result) -> set[tuple[str, str | None]]:
    return {(c.check, c.column) for c in result.failures}


def test_clean_data_passes(gov, clean):
    result = gate(gov.store, VIEW, clean, "strict", origin="test")
    assert result.passed and result.accepted and result.outcome == "passed"
    assert len(result.checks) >= 15


def test_nulls_out_of_range_and_schema_change_are_caught(gov, clean):
    df = clean.to_pandas()
    df.loc[0:2, "approval_rate_1d"] = None
    df.loc[3, "chargeback_rate_30d"] = 1.7
    df.loc[4, "txn_volume_1d"] = 0
    assert _failed(gate(gov.store, VIEW, df, "strict", origin="test")) >= {
        ("expect_column_values_to_not_be_null", "approval_rate_1d"),
        ("expect_column_values_to_be_between", "chargeback_rate_30d"),
        ("expect_column_values_to_be_between", "txn_volume_1d"),
    }
    renamed = clean.rename_columns(["merchant" if c == "merchant_id" else c for c in clean.column_names])
    retyped = clean.set_column(
        clean.schema.get_field_index("txn_volume_1d"),
        "txn_volume_1d",
        clean.column("txn_volume_1d").cast(pa.string()),
    )
    assert ("expect_table_columns_to_match_set", None) in _failed(
        gate(gov.store, VIEW, renamed, origin="test")
    )
    bad_type = gate(gov.store, VIEW, retyped, origin="test")
    assert ("schema_type", "txn_volume_1d") in _failed(bad_type)
    assert "declared INT64, got string" in bad_type.failures[0].detail


def _delta_rows(gov) -> int:
    source = offline.view_source(gov.store, VIEW).source
    return DeltaTable(str(gov.repo_path / source.path)).count()


def _guarded_append(gov, table, mode):
    """What backfill/ingest do with the hook: validate the chunk, write only if accepted."""
    result = gate(gov.store, VIEW, table, mode, origin="backfill")
    if result.accepted:
        append(offline.view_source(gov.store, VIEW).source, table, gov.store.config)
    return result


def test_strict_gate_stops_the_write_and_warn_writes_and_records(gov, clean):
    bad = clean.to_pandas()
    bad.loc[0, "approval_rate_1d"] = -3.0
    bad["event_timestamp"] = bad["event_timestamp"] - datagen.pd.Timedelta(
        days=400
    )  # away from other tests' windows
    bad["created_at"] = bad["event_timestamp"]
    bad = datagen.to_arrow(bad)
    before = _delta_rows(gov)

    strict = _guarded_append(gov, bad, "strict")
    assert not strict.accepted and strict.outcome == "rejected"
    assert _delta_rows(gov) == before
    with pytest.raises(ValidationFailed, match="merchant_risk_daily: rejected"):
        strict.raise_if_rejected()

    warn = _guarded_append(gov, bad, "warn")
    assert warn.accepted and warn.outcome == "warned"
    assert _delta_rows(gov) == before + bad.num_rows

    stored = {r.run_id: r for r in list_results(gov.store, VIEW, limit=100)}
    assert stored[strict.run_id].outcome == "rejected" and stored[warn.run_id].outcome == "warned"
    assert stored[warn.run_id].failures[0].samples == [-3.0]
    assert all(not r.passed for r in list_results(gov.store, VIEW, failed_only=True))


def test_offline_window_and_cli(gov, capsys):
    end = datagen.default_end()
    result = validate_offline(gov.store, "customer_txn_rolling", end - datagen.timedelta(days=2), end)
    assert result.passed and 0 < result.rows < len(gov.rolling)
    repo = str(gov.repo_path)
    assert main(["--repo", repo, "--json", "validate", "customer_profile", "--start", "-3d"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["view"] == "customer_profile" and out["outcome"] == "passed" and out["origin"] == "cli"
    assert main(["--repo", repo, "--json", "validate", "--list", "--limit", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["--repo", repo, "validate", "txn_amount_vs_history"]) == 1
    assert "on-demand feature view" in capsys.readouterr().err


def test_an_aggregation_view_has_no_stored_rows_to_validate(gov, capsys):
    """Its source table holds the raw payments: validating them as if they were its feature values
    would be wrong, so it is refused (one line, exit 1) and nothing is recorded."""
    with pytest.raises(RepoError, match="'customer_txn_aggregates' is an aggregation view") as err:
        validate_offline(gov.store, "customer_txn_aggregates")
    assert "get_historical_features" in str(err.value) and "\n" not in str(err.value)
    assert main(["--repo", str(gov.repo_path), "validate", "customer_txn_aggregates", "--start", "-2d"]) == 1
    out = capsys.readouterr()
    assert "is an aggregation view" in out.err and "Traceback" not in out.err
    assert len(out.err.strip().splitlines()) == 1
    assert list_results(gov.store, "customer_txn_aggregates") == []  # nothing judged, nothing recorded


def test_cli_bad_times_are_usage_errors(gov, capsys):
    repo = str(gov.repo_path)
    assert main(["--repo", repo, "validate", "customer_profile", "--start", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert "--start" in err and "not a time: 'yesterday'" in err and "ValueError" not in err
    assert main(["--repo", repo, "validate", "customer_profile", "--end", "-3x"]) == 2
    assert "--end" in capsys.readouterr().err
    for option, value in (
        ("--reference", "-14d..soon"),
        ("--current", "2026-13-01..now"),
        ("--current", "-7d"),
    ):
        window = ["--reference", "-14d..-7d", "--current", "-7d..now", option, value]
        assert main(["--repo", repo, "monitor", "drift", "customer_profile", *window]) == 2
        err = capsys.readouterr().err
        assert option in err and "ValueError" not in err


def test_multi_column_expectations_mask_when_any_column_is_sensitive(gov):
    from pathlib import Path

    from fs_platform.governance.expectations import Suite
    from fs_platform.governance.validate import run_checks

    view = gov.store.get_feature_view("customer_profile")
    frame = gov.data.customer_profile.head(20).copy()
    frame["email_domain"] = "leak.example"
    frame["country"] = "leak.example"  # equal to email_domain: the within-record check fails
    suite = Suite(
        name="multi",
        path=Path("multi.json"),
        expectations=[
            # email_domain (pii) only as column_B: samples would show its values
            {
                "type": "expect_column_pair_values_to_be_equal",
                "kwargs": {"column_A": "kyc_level", "column_B": "email_domain"},
            },
            # country (pseudonymous) inside a column_list
            {
                "type": "expect_compound_columns_to_be_unique",
                "kwargs": {"column_list": ["kyc_level", "country"]},
            },
            {
                "type": "expect_select_column_values_to_be_unique_within_record",
                "kwargs": {"column_list": ["country", "email_domain"]},
            },
            # no sensitive column: not masked
            {
                "type": "expect_column_pair_values_to_be_equal",
                "kwargs": {"column_A": "kyc_level", "column_B": "account_age_days"},
            },
        ],
    )
    checks = [c for c in run_checks(view, suite, frame) if c.check != "schema_type"]
    assert len(checks) == 4 and not any(c.success for c in checks[:3])
    text = json.dumps([c.samples for c in checks[:3]] + [c.detail for c in checks[:3]], default=str)
    assert "leak.example" not in text and "masked:" in text
    assert checks[3].samples and "masked:" not in json.dumps(checks[3].samples, default=str)
