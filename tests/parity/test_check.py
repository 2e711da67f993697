"""End-to-end parity checks on real Delta tables (Sail) and the machine's Redis: each class is injected
on purpose and must be detected and classified; a healthy system reports nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest

from fs_platform.parity import check
from fs_platform.parity.report import MASK, write_prometheus
from fs_platform.timeutil import utcnow
from tests.parity.conftest import changed, newest

pytestmark = pytest.mark.redis


def _profile_customer(stores, snapshots: int) -> int:
    """A customer with exactly ``snapshots`` profile rows."""
    counts = stores.data.customer_profile.groupby("customer_id").size()
    return int(counts[counts == snapshots].index[0])


def _only(report, view):
    (v,) = [v for v in report.views if v.view == view]
    return v


def _check_profile(stores, customer: int):
    """Parity of one customer's profile: (report, its view report, feature -> stats)."""
    report = check(stores.store, views=["customer_profile"], entities=pa.table({"customer_id": [customer]}))
    view = _only(report, "customer_profile")
    return report, view, {f.feature: f for f in view.features}


def test_healthy_system_reports_zero_mismatches(stores):
    report = check(stores.store, sample=100, seed=3)
    assert {v.view for v in report.views} == {
        "merchant_risk_daily",
        "customer_profile",
        "customer_txn_aggregates",
        "last_payment",
    }
    for v in report.views:
        total = v.total()
        assert v.entities > 0
        assert total.mismatched == 0, (v.view, total.counts)
        assert not v.examples
    assert report.verdict == "ok"


def test_feature_service_selects_its_features(stores):
    report = check(stores.store, feature_service="fraud_core", sample=20)
    assert [f.feature for f in _only(report, "customer_profile").features] == ["country", "kyc_level"]


def test_deleted_key_is_missing_online(stores):
    customer = _profile_customer(stores, 1)
    stores.client().delete(stores.key("customer_profile", customer_id=customer))
    report = check(
        stores.store, views=["customer_profile"], entities=pa.table({"customer_id": [customer, customer + 1]})
    )
    total = _only(report, "customer_profile").total()
    assert total.counts["missing_online"] == 5 and total.mismatched == 5
    assert report.verdict == "breach"
    (example,) = _only(report, "customer_profile").examples
    assert example.entity == {"customer_id": customer} and example.online_ts is None and example.offline_ts


def test_older_online_row_is_online_stale(stores):
    customer = _profile_customer(stores, 2)
    rows = stores.data.customer_profile
    older = rows[rows.customer_id == customer].sort_values("event_timestamp").iloc[[0]]
    stores.client().delete(stores.key("customer_profile", customer_id=customer))
    stores.write("customer_profile", older)  # a materialization that stopped before the KYC upgrade
    _, view, _ = _check_profile(stores, customer)
    assert view.total().counts["online_stale"] == 5
    example = view.examples[0]
    assert example.online_ts < example.offline_ts
    assert "older than the newest offline row" in example.detail


def test_changed_value_is_value_mismatch_and_pii_is_masked(stores, tmp_path):
    customer = _profile_customer(stores, 1)
    row = newest(stores.data.customer_profile, "customer_id", customer)
    offline_domain = row.email_domain.iloc[0]
    # Same event, later created_at: the store accepts it as a correction of that event.
    bad = changed(
        row,
        kyc_level=(int(row.kyc_level.iloc[0]) + 1) % 4,
        email_domain="canary-leak.example",
        created_at=row.created_at.iloc[0] + timedelta(seconds=5),
    )
    stores.write("customer_profile", bad)
    report, view, by_feature = _check_profile(stores, customer)
    assert by_feature["kyc_level"].counts["value_mismatch"] == 1
    assert by_feature["email_domain"].counts["value_mismatch"] == 1
    assert by_feature["country"].mismatched == 0
    shown = {e.feature: e for e in view.examples}
    assert shown.get("kyc_level") or shown.get("email_domain")
    for e in view.examples:
        if e.feature in ("email_domain", "country"):
            assert e.online_value == MASK and e.offline_value == MASK
    text = (
        json.dumps(report.to_dict(), default=str)
        + "\n".join(report.example_lines())
        + str(report.summary_rows())
    )
    assert "canary-leak.example" not in text and offline_domain not in text


def test_an_offline_correction_not_yet_materialized_is_online_stale(stores):
    """Online holds an event as first written; offline holds a correction of that same event
    (created later, e.g. an offline-only backfill): the differing feature is online_stale, not a
    value mismatch, and the example says why."""
    customer = _profile_customer(stores, 1)
    row = newest(stores.data.customer_profile, "customer_id", customer)
    first_write = changed(
        row,
        kyc_level=(int(row.kyc_level.iloc[0]) + 1) % 4,
        created_at=row.created_at.iloc[0] - timedelta(seconds=5),
    )
    stores.client().delete(stores.key("customer_profile", customer_id=customer))
    stores.write("customer_profile", first_write)
    report, view, by_feature = _check_profile(stores, customer)
    assert by_feature["kyc_level"].counts["online_stale"] == 1
    assert by_feature["kyc_level"].counts["value_mismatch"] == 0
    assert all(f.mismatched == 0 for name, f in by_feature.items() if name != "kyc_level")
    (example,) = view.examples
    assert example.online_ts == example.offline_ts and "created later" in example.detail
    assert report.verdict == "breach"


def test_wrong_python_type_online_is_type_mismatch(stores):
    customer = _profile_customer(stores, 1)
    row = newest(stores.data.customer_profile, "customer_id", customer)
    state = stores.online.state(stores.store.config)
    codec = state.codec(stores.view("customer_profile"))
    values = [row[name].iloc[0] for name in codec.names]
    values = [v.item() if hasattr(v, "item") else v for v in values]
    values[codec.index["account_age_days"]] = "1200"  # a writer that serialised an int as a string
    ev = int(row.event_timestamp.iloc[0].value // 1000)
    stores.client().set(stores.key("customer_profile", customer_id=customer), codec.encode(ev, ev, values))
    _, _, by_feature = _check_profile(stores, customer)
    assert by_feature["account_age_days"].counts["type_mismatch"] == 1
    assert sum(f.mismatched for f in by_feature.values()) == 1


def test_held_back_offline_copy_is_online_ahead_within_lag_and_missing_offline_after(stores):
    rows = stores.data.last_payment
    active = int(rows.customer_id.iloc[-1])
    row = newest(rows, "customer_id", active)
    now = utcnow()
    # The stream wrote online; the offline sink has not landed it yet (held back).
    stores.write(
        "last_payment",
        changed(row, event_timestamp=pd.Timestamp(now), created_at=pd.Timestamp(now), amount=99.0),
    )
    ghost = changed(
        row,
        customer_id=987654321,
        event_timestamp=pd.Timestamp(now - timedelta(hours=3)),
        created_at=pd.Timestamp(now - timedelta(hours=3)),
    )
    stores.write("last_payment", ghost)  # online only, three hours ago: the offline write was lost
    keys = pa.table({"customer_id": [active, 987654321]})
    report = check(stores.store, views=["last_payment"], entities=keys, as_of=now + timedelta(seconds=1))
    view = _only(report, "last_payment")
    total = view.total()
    assert total.counts["online_ahead"] == 2 and total.counts["missing_offline"] == 2
    assert total.tolerated == 2 and total.breaching == 2
    assert view.allowed_lag_s == 15 * 60  # the view's freshness_sla
    # A wider allowed lag turns the lost write into lag as well.
    relaxed = check(
        stores.store,
        views=["last_payment"],
        entities=keys,
        as_of=now + timedelta(seconds=1),
        allowed_lag=timedelta(hours=4),
    )
    assert _only(relaxed, "last_payment").total().counts["online_ahead"] == 4
    assert relaxed.verdict == "ok"


def test_aggregation_view_online_tiles_equal_spark_and_a_lost_tile_is_a_value_mismatch(stores):
    """Online merges the rebuilt tiles as of now, Spark computes the windows from the raw events: equal.
    Deleting one active customer's tiles (Redis lost them) shows as value mismatches for that customer."""
    report = check(stores.store, views=["customer_txn_aggregates"], sample=200, seed=1)
    view = _only(report, "customer_txn_aggregates")
    assert view.entities > 0 and view.total().mismatched == 0, view.total().counts
    pay = stores.data.payments
    recent = pay[pay.event_timestamp > pay.event_timestamp.max() - timedelta(hours=20)]
    victim = int(recent.customer_id.value_counts().index[0])
    stores.client().delete(stores.key("customer_txn_aggregates", customer_id=victim))
    report = check(
        stores.store, views=["customer_txn_aggregates"], entities=pa.table({"customer_id": [victim]})
    )
    by_feature = {f.feature: f for f in _only(report, "customer_txn_aggregates").features}
    assert by_feature["txn_count_24h"].counts["value_mismatch"] == 1
    assert report.verdict == "breach"


def test_expired_ttl_is_ttl_expired_and_tolerated(stores):
    merchants = pa.table(
        {"merchant_id": sorted(stores.data.merchant_risk_daily.merchant_id.unique().tolist())[:10]}
    )
    later = utcnow() + timedelta(days=3)  # past merchant_risk_daily's 2-day ttl for every row
    report = check(stores.store, views=["merchant_risk_daily"], entities=merchants, as_of=later)
    total = _only(report, "merchant_risk_daily").total()
    assert total.counts["ttl_expired"] == total.compared == 10 * 6
    assert total.breaching == 0 and report.verdict == "ok"
    assert "both sides serve null" in _only(report, "merchant_risk_daily").examples[0].detail


def _expired_since(stores, minutes_before_expiry: int = 5):
    """A customer whose newest last_payment row expired (ttl 1 day) before now, and an as_of at which
    it was still live: Redis dropped (or never kept) that key, online has no history to show."""
    rows = stores.data.last_payment
    newest_per = rows.groupby("customer_id").event_timestamp.max()
    now = utcnow()
    old = newest_per[(newest_per < now - timedelta(days=1, hours=1)) & (newest_per > now - timedelta(days=2))]
    customer = int(old.index[0])
    as_of = old.iloc[0].to_pydatetime() + timedelta(days=1) - timedelta(minutes=minutes_before_expiry)
    return customer, as_of


def test_a_past_as_of_reports_no_breach_for_keys_expired_since(stores):
    """#14.7: an incident's as_of pasted later. The key was live then and expired since: tolerated
    ttl_expired (was missing_online, a breach). A customer active since as_of is online_ahead, said so."""
    customer, as_of = _expired_since(stores)
    active = int(stores.data.last_payment.customer_id.iloc[-1])  # its newest event is after as_of
    keys = pa.table({"customer_id": [customer, active]})
    report = check(stores.store, views=["last_payment"], entities=keys, as_of=as_of)
    view = _only(report, "last_payment")
    total = view.total()
    assert total.counts["missing_online"] == 0 and total.breaching == 0, total.counts
    assert total.counts["ttl_expired"] == 2 and total.counts["online_ahead"] == 2
    assert report.verdict == "ok"
    details = {e.outcome: e.detail for e in view.examples}
    assert "before the online read" in details["ttl_expired"]
    assert "after as_of: written since" in details["online_ahead"]


def test_threshold_decides_the_verdict(stores):
    customer = _profile_customer(stores, 1)
    stores.client().delete(stores.key("customer_profile", customer_id=customer))
    keys = pa.table({"customer_id": list(range(1, 101))})
    assert (
        check(stores.store, views=["customer_profile"], entities=keys, max_mismatch_rate=0.05).verdict == "ok"
    )
    assert (
        check(stores.store, views=["customer_profile"], entities=keys, max_mismatch_rate=0.0).verdict
        == "breach"
    )


def test_prometheus_textfile_has_rates_and_no_entity_labels(stores, tmp_path):
    report = check(stores.store, views=["merchant_risk_daily"], sample=10)
    path = tmp_path / "parity.prom"
    write_prometheus(report, str(path))
    text = path.read_text()
    assert (
        'fs_parity_mismatch_rate{class="value_mismatch",feature="txn_volume_1d",'
        'view="merchant_risk_daily"} 0.0' in text
    )
    assert 'fs_parity_breach{view="merchant_risk_daily"} 0.0' in text
    assert "merchant_id" not in text


def test_expected_values_match_the_offline_stores_point_in_time_join(stores):
    """Parity's 'what online should hold' is what training reads: Feast's historical retrieval at as_of."""
    as_of = utcnow()
    report = check(stores.store, views=["customer_profile", "last_payment"], sample=50, seed=5, as_of=as_of)
    assert report.verdict == "ok"
    from fs_platform.parity.expected import EVENT_TS, expected_rows
    from fs_platform.parity.sampling import sample_keys
    from fs_platform.parity.spark_io import SparkIO, view_source
    from fs_platform.parity.targets import resolve
    from fs_platform.plugins.delta.engine import get_engine

    io = SparkIO(get_engine(stores.store.config), stores.store.config)
    for target in resolve(stores.store, ["last_payment"])[0]:
        src = view_source(target, stores.store.config)
        keys = sample_keys(io, src, as_of, 50, 5, timedelta(days=1))
        ours = expected_rows(io, src, keys, as_of).to_pandas()
        ours = ours[ours[EVENT_TS] >= as_of - target.ttl].sort_values("customer_id").reset_index(drop=True)
        entity_df = pd.DataFrame({"customer_id": keys["customer_id"].to_pylist(), "event_timestamp": as_of})
        refs = [f"{target.name}:{f}" for f in target.features]
        theirs = (
            stores.store.get_historical_features(entity_df, refs).to_df().dropna(subset=list(target.features))
        )
        theirs = theirs.sort_values("customer_id").reset_index(drop=True)
        assert len(ours) > 10
        pd.testing.assert_frame_equal(
            ours[list(target.features)], theirs[list(target.features)], check_dtype=False
        )


def test_expected_aggregates_equal_the_naive_reference(stores):
    """Parity's expected values of an aggregation view (Spark) equal the independent reference."""
    from fs_platform.aggregation import spec_of
    from fs_platform.parity.expected import expected_aggregates
    from fs_platform.parity.sampling import sample_keys
    from fs_platform.parity.spark_io import SparkIO, view_source
    from fs_platform.parity.targets import resolve
    from fs_platform.plugins.delta.engine import get_engine
    from tests.aggregation.reference import expected

    as_of = utcnow()
    io = SparkIO(get_engine(stores.store.config), stores.store.config)
    (target,) = resolve(stores.store, ["customer_txn_aggregates"])[0]
    src = view_source(target, stores.store.config)
    keys = sample_keys(io, src, as_of, 40, 2, timedelta(days=1))
    ours = (
        expected_aggregates(io, src, keys, as_of)
        .to_pandas()
        .sort_values("customer_id")
        .reset_index(drop=True)
    )
    requests = pd.DataFrame({"customer_id": ours["customer_id"], "event_timestamp": as_of})
    want = expected(spec_of(target.view), stores.data.payments, requests)
    assert len(ours) == 40
    for f in target.features:
        assert ours[f].tolist() == pytest.approx(want[f].tolist(), rel=1e-9, nan_ok=True), f


def test_keys_of_a_pii_entity_are_masked_in_examples(stores):
    """A join key of an entity tagged ``pii: pii`` (a direct identifier) never appears in clear."""
    import copy

    from fs_platform.governance.pii import mask

    original = stores.store.get_entity("customer")
    tagged = copy.deepcopy(original)
    tagged.tags = {**original.tags, "pii": "pii"}
    stores.store.apply([tagged])
    try:
        customer = _profile_customer(stores, 1)
        stores.client().delete(stores.key("customer_profile", customer_id=customer))
        report = check(
            stores.store, views=["customer_profile"], entities=pa.table({"customer_id": [customer]})
        )
    finally:
        stores.store.apply([original])
    (example,) = _only(report, "customer_profile").examples
    assert example.entity == {"customer_id": mask(customer)}
    assert f'"customer_id": {customer}' not in json.dumps(report.to_dict())
    assert f"customer_id={customer} " not in "\n".join(report.example_lines())


def test_an_entities_file_error_never_quotes_its_contents(stores, tmp_path):
    from fs_platform.errors import ParityError
    from fs_platform.parity.sampling import read_entities

    bad = tmp_path / "suspects.csv"
    bad.write_text("customer_id\njane.doe@example.com\n")
    with pytest.raises(ParityError) as err:
        check(stores.store, views=["customer_profile"], entities=read_entities(bad))
    assert "jane.doe" not in str(err.value) and "customer_id" in str(err.value)
    # Keys with leading zeros survive reading (text columns; cast per view).
    padded = tmp_path / "padded.csv"
    padded.write_text("customer_id,note\n007,x\n")
    assert read_entities(padded).column("customer_id").to_pylist() == ["007"]
