"""Fixtures for the Kafka ingestor: one embedded tansu broker per session, a private copy of the
example repo per test (its own Redis key prefix, its own Delta tables), producers and run helpers."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.conftest import copy_example_repo

ROOT_DIR = Path(__file__).resolve().parents[3]

# Fast group joins on tansu: short session/heartbeat, and a short rebalance timeout (= max poll interval).
FAST_KAFKA = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300, "max_poll_interval_ms": 10000}
STREAM_OBJECTS = ("customer_txn_aggregates",)


@pytest.fixture(scope="session")
def broker():
    from plugins.kafka_ingest.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def write_ingest_yaml(repo: Path, bootstrap: str, topic: str, group: str, **extra) -> None:
    batch = {"online_interval_ms": 50, "offline_interval_ms": 300, **extra.pop("batch", {})}
    retry = {"backoff_base_ms": 20, "backoff_max_ms": 200, **extra.pop("retry", {})}
    doc = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group, **FAST_KAFKA, **extra.pop("kafka", {})},
        "dead_letter_topic": f"{topic}.dlq",
        "batch": batch,
        "retry": retry,
        "topics": [{
            "topic": topic,
            "push_source": "customer_txn_push",
            "fields": {"payment_id": "int", "customer_id": "int", "amount": "float", "event_timestamp": "timestamp"},
            "transform": "stream_transforms.py:CustomerTxnAggregates",
            "targets": "both",
            **extra.pop("topic", {}),
        }],
        **extra,
    }
    (repo / "ingest.yaml").write_text(yaml.safe_dump(doc))


class StreamRepo:
    """A repo copy with the stream view applied, an empty offline table, and its own topics."""

    def __init__(self, root: Path, broker, redis_url: str):
        from fs import datagen
        from fs import repo as repo_mod
        from fs.platform import Platform

        self.path = copy_example_repo(root)
        self.prefix = unique("t").replace("-", "")
        cfg = yaml.safe_load((self.path / "feature_store.yaml").read_text())
        cfg["online_store"].update(url=redis_url, key_prefix=self.prefix)
        (self.path / "feature_store.yaml").write_text(yaml.safe_dump(cfg))
        tiny = datagen.generate(seed=1, customers=5, merchants=2, days=1)
        datagen.write_tables(tiny, self.path / "data")  # the sources must exist to be applied
        self.platform = Platform(self.path)
        contents = repo_mod.parse(self.path)
        self.platform.store.apply([*contents.entities, *contents.data_sources,
                                   *[v for v in contents.feature_views if v.name in STREAM_OBJECTS]])
        import shutil

        shutil.rmtree(self.path / "data" / "customer_txn_aggregates")  # only ingested rows from here on
        self.broker = broker
        self.topic = unique("payments")
        self.group = unique("g")
        broker.create_topic(self.topic, 2)
        broker.create_topic(f"{self.topic}.dlq", 1)
        write_ingest_yaml(self.path, broker.bootstrap, self.topic, self.group)

    def configure(self, **extra) -> None:
        write_ingest_yaml(self.path, self.broker.bootstrap, self.topic, self.group, **extra)

    def config(self):
        from plugins.kafka_ingest import load_ingest_config

        return load_ingest_config(self.path)

    @property
    def delta_path(self) -> Path:
        return self.path / "data" / "customer_txn_aggregates"

    def delta_rows(self):
        from deltalake import DeltaTable

        if not self.delta_path.exists():
            return None
        return DeltaTable(str(self.delta_path)).to_pandas()

    def online(self, customers: list[int]):
        features = ["customer_txn_aggregates:txn_count_24h", "customer_txn_aggregates:txn_amount_24h",
                    "customer_txn_aggregates:txn_count_1h"]
        return self.platform.store.get_online_features(
            features=features, entity_rows=[{"customer_id": int(c)} for c in customers]).to_df()

    def committed(self) -> dict[int, int | None]:
        consumer = KafkaConsumer(bootstrap_servers=self.broker.bootstrap, group_id=self.group, enable_auto_commit=False)
        try:
            return {p: consumer.committed(TopicPartition(self.topic, p)) for p in (0, 1)}
        finally:
            consumer.close(autocommit=False)


@pytest.fixture
def stream_repo(tmp_path, broker):
    repo = StreamRepo(tmp_path, broker, "redis://127.0.0.1:6379/0")
    yield repo
    repo.platform.store.teardown()


def payments(n: int, customers: int = 20, start: datetime | None = None, first_id: int = 1, seed: int = 0) -> list[dict]:
    """``n`` payments with distinct, increasing event times (a few seconds apart) ending near now."""
    import random

    rng = random.Random(seed)
    start = start or datetime.now(UTC) - timedelta(seconds=3 * n + 60)
    return [{"payment_id": first_id + i, "customer_id": rng.randint(1, customers), "merchant_id": 1,
             "amount": round(rng.lognormvariate(3, 1), 2), "approved": True,
             "event_timestamp": (start + timedelta(seconds=3 * i)).isoformat()} for i in range(n)]


def produce(bootstrap: str, topic: str, events: list[dict], raw: list[bytes] = ()) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for e in events:
        producer.send(topic, key=str(e["customer_id"]).encode(), value=json.dumps(e).encode())
    for value in raw:
        producer.send(topic, key=b"bad", value=value, headers=[("origin", b"test")])
    producer.flush()
    producer.close()


def expected_aggregates(events: list[dict]):
    """The batch computation of the stream's rows: one row per payment."""
    import pandas as pd

    from fs import datagen

    df = pd.DataFrame(events)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return datagen.customer_aggregates(df)


class Running:
    """An ingestor on a thread; ``wait(pred)`` polls its stats."""

    def __init__(self, ingestor):
        self.ingestor = ingestor
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.ingestor.run()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def wait(self, pred, timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.ingestor.stats):
            if self.error or not self.thread.is_alive():
                raise AssertionError(f"ingestor died: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.ingestor.stats.to_dict()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0):
        self.ingestor.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "ingestor did not stop"
        if self.error:
            raise self.error
        return self.ingestor.stats


def assert_exactly_once(repo: StreamRepo, events: list[dict]) -> None:
    """Delta holds one row per payment with the batch aggregates; online holds each customer's newest."""
    import pandas as pd

    rows = repo.delta_rows()
    expected = expected_aggregates(events)
    assert rows is not None and len(rows) == len(events), f"{0 if rows is None else len(rows)} rows for {len(events)} events"
    got = rows.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    want = expected.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    assert not got.duplicated(["customer_id", "event_timestamp"]).any()
    pd.testing.assert_series_equal(got["txn_count_24h"], want["txn_count_24h"], check_dtype=False)
    pd.testing.assert_series_equal(got["txn_amount_24h"], want["txn_amount_24h"], check_dtype=False)
    newest = want.groupby("customer_id").last()
    online = repo.online(list(newest.index)).set_index("customer_id")
    assert online["txn_count_24h"].tolist() == newest["txn_count_24h"].tolist()
    assert online["txn_amount_24h"].tolist() == pytest.approx(newest["txn_amount_24h"].tolist())
