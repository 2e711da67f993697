"""fs doctor triage (one timeline, likely cause first, an incident note) and fs doctor cost (memory per
view and feature, unused features, ttl vs SLA, Delta small and unreferenced files) on real Redis and
Delta (issue #16.5, #16.7)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

from fs_platform.cli.main import app
from fs_platform.doctor import ops
from fs_platform.doctor.cost import SMALL_FILES, cost
from fs_platform.doctor.triage import triage
from fs_platform.plugins.delta.tables import resolve_location
from fs_platform.timeutil import utcnow
from tests.doctor.conftest import VIEW, failed_chunk

pytestmark = [pytest.mark.redis]
runner = CliRunner()


def _no_ingest(platform):
    (platform.repo_path / "ingest.yaml").unlink()  # this copy has no Kafka ingestion to look at


def _services(platform):
    """Register the repo's feature services and on-demand views too (make_repo applies the views)."""
    contents = platform.definitions()
    platform.store.apply([*contents.on_demand_feature_views, *contents.feature_services])


def _record_failed_validation(platform):
    from fs_platform.governance.validate import CheckResult, ResultLog, ValidationResult

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
            checks=[CheckResult("expect_column_values_to_not_be_null", "txn_count_1h", False, 3, 30.0)],
        )
    )


def test_triage_ranks_the_registry_change_before_the_failures_it_preceded(make_repo, tmp_path):
    platform = make_repo()
    _no_ingest(platform)
    fv = platform.feature_view(VIEW)
    fv.description = "changed by a careless apply"
    platform.store.apply([fv])  # the change ...
    failed_chunk(platform)  # ... then its chunks fail
    _record_failed_validation(platform)

    t = triage(platform, views=[VIEW], since=timedelta(hours=2))
    checks = [c.check for c in t.causes]
    assert checks[:2] == ["registry_change", "ledger"], checks
    assert "before the first symptom" in t.causes[0].what
    assert checks.index("ledger") < checks.index("freshness") < checks.index("validation")
    sources = {e.source for e in t.timeline}
    assert {"registry", "ledger", "validation"} <= sources
    assert [e.at for e in t.timeline] == sorted(e.at for e in t.timeline)
    note = t.markdown()
    assert "## Likely causes" in note and "docs/runbooks/oncall.md#registry" in note
    assert "docs/runbooks/oncall.md#ledger" in note and "resume_backfill" in note


def test_triage_cli_for_a_feature_service_writes_the_note_and_plan(make_repo, tmp_path):
    platform = make_repo()
    _no_ingest(platform)
    _services(platform)
    base = ["--repo", str(platform.repo_path)]
    note, plan = tmp_path / "incident.md", tmp_path / "plan.json"
    result = runner.invoke(
        app,
        [
            *base,
            "doctor",
            "triage",
            "--feature-service",
            "fraud_model_v1",
            "--since",
            "2h",
            "--note",
            str(note),
            "--plan",
            str(plan),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["scope"] == "fraud_model_v1"
    assert {"merchant_risk_daily", "customer_profile", "customer_txn_aggregates"} <= set(out["views"])
    stale = [c for c in out["causes"] if c["check"] == "freshness"]  # nothing materialized: stale online
    assert stale and all(c["runbook"] == "docs/runbooks/oncall.md#freshness" for c in stale)
    assert note.read_text().startswith("# Incident note: fraud_model_v1")
    assert json.loads(plan.read_text())["actions"]  # the rematerialize proposals, for review
    missing = runner.invoke(app, [*base, "doctor", "triage", "--since", "2h"])
    assert missing.exit_code != 0 and "--feature-service" in str(missing.exception)


def _online_rows(platform, view: str, days_old: int, n: int = 20):
    """Rows of ``view`` written through the store (Feast's write path), event times ``days_old`` ago."""
    fv = platform.feature_view(view)
    location = resolve_location(fv, platform.store.config)
    frame = DeltaTable(location).to_pandas().drop_duplicates(fv.entity_columns[0].name).head(n).copy()
    frame[fv.batch_source.timestamp_field] = utcnow() - timedelta(days=days_old)
    platform.store.write_to_online_store(view, frame)
    return len(frame)


def test_cost_finds_memory_unused_features_long_ttls_and_delta_files(make_repo):
    platform = make_repo()
    _services(platform)
    _online_rows(
        platform, "customer_profile", days_old=100
    )  # ttl 365 d, SLA 7 d: kept 50x longer than needed
    location = resolve_location(platform.feature_view(VIEW), platform.store.config)
    table = DeltaTable(location).to_pyarrow_table()
    for i in range(SMALL_FILES):
        write_deltalake(location, table.slice(i, 1), mode="append")

    report = cost(platform)
    by = {(f.check, f.subject): f for f in report.findings}
    memory = by[("cost_memory", "customer_profile")]
    assert memory.evidence["keys"] == 20 and memory.evidence["bytes_estimated"] > 0
    per = memory.evidence["feature_bytes"]
    assert set(per) == {"country", "email_domain", "account_age_days", "kyc_level", "is_verified"}
    assert abs(sum(per.values()) - memory.evidence["bytes_estimated"]) <= len(per)
    unused = by[("cost_unused", "customer_profile")]
    assert (
        unused.evidence["unused"] == ["email_domain"]
        and unused.evidence["saving_bytes"] == per["email_domain"]
    )
    ttl = by[("cost_ttl", "customer_profile")]
    assert ttl.evidence["older_sampled"] == ttl.evidence["sampled"] == 20 and ttl.evidence["saving_bytes"] > 0
    (compact,) = by[("cost_delta", VIEW)].actions
    assert compact.kind == "compact_delta" and by[("cost_delta", VIEW)].evidence["small_files"] > SMALL_FILES
    assert report.worst.name in ("OK", "INFO")  # cost findings inform: exit 0

    (done,) = ops.apply(platform, ops.make_plan(platform, report, proposer="alice"), approver="bob")
    assert done.action.kind == "compact_delta" and done.status == "executed"
    # The compacted files are now unreferenced, but inside the rollback window: vacuum proposes nothing ...
    assert not [f for f in cost(platform).findings if any(a.kind == "vacuum_delta" for a in f.actions)]
    # ... until the window and the table's retention are both zero.
    config = yaml.safe_load((platform.repo_path / "feature_store.yaml").read_text())
    (platform.repo_path / "feature_store.yaml").write_text(
        yaml.safe_dump({**config, "ops": {"rollback_retention_days": 0}})
    )
    DeltaTable(location).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 seconds"}
    )
    from fs_platform.platform import Platform

    later = cost(Platform(platform.repo_path), [VIEW])
    (vacuum,) = [f for f in later.findings if f.check == "cost_delta" and f.actions]
    assert vacuum.actions[0].kind == "vacuum_delta" and vacuum.evidence["saving_bytes"] > 0

    cli = runner.invoke(app, ["--repo", str(platform.repo_path), "doctor", "cost", "--json"])
    assert cli.exit_code == 0, cli.output
    assert {f["check"] for f in json.loads(cli.output)["findings"]} >= {
        "cost_memory",
        "cost_unused",
        "cost_ttl",
    }


def test_triage_puts_the_ingest_breaker_opening_first_when_it_came_before_the_failures(make_repo):
    from fs_platform.plugins.kafka_ingest.breaker_log import BreakerLog, location

    platform = make_repo()
    _no_ingest(platform)
    blog = BreakerLog(location(platform))  # what the ingestor's breakers record
    blog.record("online", "closed", "open", 5)
    blog.close()
    failed_chunk(platform)  # then chunks fail

    t = triage(platform, views=[VIEW], since=timedelta(hours=2))
    assert t.causes[0].check == "breaker_open", [c.check for c in t.causes]
    assert "online breaker closed -> open after 5 failed write(s)" in t.causes[0].what
    assert "before the first symptom" in t.causes[0].what
    assert t.causes[0].runbook.endswith("#ingest")
    assert "breaker" in {e.source for e in t.timeline}
    assert "online breaker closed -> open" in t.markdown()
