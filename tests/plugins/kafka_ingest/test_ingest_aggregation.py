"""The ingestor's stream path for aggregation views: raw events -> tiles online (each event once) and
the raw Delta table (exactly once); late and bad events dead-lettered; a replay after a crash adds
nothing; values equal the independent reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from fs.aggregation import spec_of
from tests.aggregation.reference import expected
from tests.conftest import copy_example_repo
from tests.plugins.kafka_ingest.conftest import FAST_KAFKA, Running, unique

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
VIEWS = ("merchant_txn_aggregates", "customer_amount_stats")
FIELDS = {"payment_id": "int", "customer_id": "int", "merchant_id": "int", "amount": "float",
          "approved": "bool", "event_timestamp": "timestamp"}


@pytest.fixture
def agg_repo(tmp_path, broker):
    from fs import datagen
    from fs import repo as repo_mod
    from fs.platform import Platform

    path = copy_example_repo(tmp_path)
    cfg = yaml.safe_load((path / "feature_store.yaml").read_text())
    cfg["online_store"].update(url="redis://127.0.0.1:6379/0", key_prefix=unique("t").replace("-", ""))
    (path / "feature_store.yaml").write_text(yaml.safe_dump(cfg))
    datagen.write_tables(datagen.generate(seed=1, customers=5, merchants=2, days=1), path / "data")
    import shutil

    shutil.rmtree(path / "data" / "payments")  # raw events only from the stream from here on
    platform = Platform(path)
    contents = repo_mod.parse(path)
    platform.store.apply([*contents.entities, *contents.data_sources,
                          *[v for v in contents.feature_views if v.name in VIEWS]])
    topic, group = unique("payments"), unique("g")
    broker.create_topic(topic, 2)
    broker.create_topic(f"{topic}.dlq", 1)
    doc = {"kafka": {"bootstrap_servers": broker.bootstrap, "group_id": group, **FAST_KAFKA},
           "dead_letter_topic": f"{topic}.dlq", "batch": {"online_interval_ms": 50, "offline_interval_ms": 300},
           "topics": [{"topic": topic, "push_source": "payments_push", "fields": FIELDS, "targets": "both"}]}
    (path / "ingest.yaml").write_text(yaml.safe_dump(doc))
    yield platform, topic, group
    platform.store.teardown()


def _produce(bootstrap, topic, events, raw=()):
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for e in events:
        producer.send(topic, key=str(e["customer_id"]).encode(), value=json.dumps(e).encode())
    for value in raw:
        producer.send(topic, key=b"bad", value=value)
    producer.flush()
    producer.close()


def _events(n: int, first_id: int = 1, late_every: int = 0) -> list[dict]:
    start = datetime.now(UTC) - timedelta(minutes=50)
    out = []
    for i in range(n):
        ts = start + timedelta(seconds=20 * i)
        if late_every and i % late_every == 0:
            ts -= timedelta(minutes=5)  # late (arrives after later events), within the allowed hour
        out.append({"payment_id": first_id + i, "customer_id": 1 + i % 4, "merchant_id": 1 + i % 3,
                    "amount": round(5 + (i * 7.3) % 90, 2), "approved": i % 5 != 0,
                    "event_timestamp": ts.isoformat()})
    return out


def _ingest(platform, until):
    from plugins.kafka_ingest import Ingestor, load_ingest_config

    running = Running(Ingestor(platform, load_ingest_config(platform.repo_path)))
    running.wait(until, what="events ingested")
    return running.stop()


def _assert_matches_reference(platform, events: list[dict]) -> None:
    frame = pd.DataFrame(events)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    now = datetime.now(UTC)
    for name, key in (("merchant_txn_aggregates", "merchant_id"), ("customer_amount_stats", "customer_id")):
        view = platform.store.get_feature_view(name)
        ids = sorted(frame[key].unique().tolist())
        online = platform.store.get_online_features(
            features=[f"{name}:{f.name}" for f in view.features], entity_rows=[{key: int(i)} for i in ids]
        ).to_df()
        # the reference at a time a little before the read: nothing happens in between
        want = expected(spec_of(view), frame, pd.DataFrame({key: ids, "event_timestamp": [now] * len(ids)}))
        for f in view.features:
            got, exp = online[f.name].tolist(), want[f.name].tolist()
            for a, b in zip(got, exp, strict=True):
                if b is None or b != b:
                    assert a is None or a != a, (f.name, got, exp)
                else:
                    assert a == pytest.approx(b, rel=1e-9), (f.name, got, exp)


def test_raw_events_feed_tiles_and_delta_once(agg_repo, broker):
    platform, topic, group = agg_repo
    events = _events(60, late_every=7)
    too_late = {**events[0], "payment_id": 999, "event_timestamp": (datetime.now(UTC) - timedelta(hours=3)).isoformat()}
    bad = [b'{"payment_id": 1, "customer_id": 100000000000000000000, "merchant_id": 1, "amount": 1.0, '
           b'"approved": true, "event_timestamp": "2026-01-01T00:00:00+00:00"}',
           b'{"payment_id": 2, "customer_id": 1, "merchant_id": 1, "amount": NaN, "approved": true, '
           b'"event_timestamp": "2026-01-01T00:00:00+00:00"}']
    _produce(broker.bootstrap, topic, [*events, too_late], raw=bad)
    stats = _ingest(platform, lambda s: s.consumed >= 63 and s.written_offline >= 60)
    assert stats.dead_lettered["too_late"] == 1
    assert stats.dead_lettered["bad_number"] == 2
    from deltalake import DeltaTable

    rows = DeltaTable(str(platform.repo_path / "data" / "payments")).to_pandas()
    assert sorted(rows["payment_id"]) == [e["payment_id"] for e in events]
    _assert_matches_reference(platform, events)

    # A crash before the commit: the group's offsets rewind to 0 and everything is delivered again.
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(0, "", -1) for p in (0, 1)})
    consumer.close()
    more = _events(10, first_id=1000)
    _produce(broker.bootstrap, topic, more)
    stats = _ingest(platform, lambda s: s.consumed >= 73)
    assert stats.written_online == 10 * 2  # only the new events, once per view; the replay is a no-op
    rows = DeltaTable(str(platform.repo_path / "data" / "payments")).to_pandas()
    assert len(rows) == 70 and not rows["payment_id"].duplicated().any()
    _assert_matches_reference(platform, events + more)
