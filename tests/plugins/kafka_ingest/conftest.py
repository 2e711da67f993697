"""Fixtures for the Kafka ingestor: one embedded tansu broker per session, a private copy of the
example repo per test (its own Redis key prefix, its own Delta tables, its own topics), producers,
run helpers, and the checks every fault test ends with.

Two kinds of repo copy:
- ``stream_repo``: the example repo's stream path. Topic -> ``payments_push`` (raw payment events,
  no transform) -> the tiles of its three aggregation views online and ``data/payments`` in Delta.
  ``assert_exactly_once`` checks Delta holds each produced event once and the online values equal
  the independent reference (``tests/aggregation/reference.py``) over the produced events.
- ``transform_repo``: the generic transform-hook machinery, which the example repo no longer uses.
  ``fixtures/`` adds a plain push view ``customer_txn_counts`` fed through the stateful transform
  ``fixtures/running_count.py`` (a running count and amount per customer).
"""

from __future__ import annotations

import json
import shutil
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
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Fast group joins on tansu: short session/heartbeat, and a short rebalance timeout (= max poll interval).
FAST_KAFKA = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300, "max_poll_interval_ms": 10000}
# The example repo's aggregation views over payments_push, and the key each aggregates by.
AGGREGATION_VIEWS = {
    "customer_txn_aggregates": "customer_id",
    "merchant_txn_aggregates": "merchant_id",
    "customer_amount_stats": "customer_id",
    "customer_merchant_spread": "customer_id",
}
EVENT_FIELDS = {
    "payment_id": "int",
    "customer_id": "int",
    "merchant_id": "int",
    "amount": "float",
    "approved": "bool",
    "event_timestamp": "timestamp",
}
TRANSFORM_VIEW = "customer_txn_counts"


@pytest.fixture(scope="session")
def broker():
    from fs_platform.plugins.kafka_ingest.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


class StreamRepo:
    """A repo copy with its stream views applied, no offline rows yet, and its own topics.

    ``transform``: None for the example repo's aggregation path; else a class of
    ``fixtures/running_count.py`` feeding the fixture's plain view."""

    def __init__(self, root: Path, broker, redis_url: str, transform: str | None = None):
        from fs_platform import datagen
        from fs_platform import repo as repo_mod
        from fs_platform.platform import Platform

        self.path = copy_example_repo(root)
        self.transform = transform
        self.prefix = unique("t").replace("-", "")
        cfg = yaml.safe_load((self.path / "feature_store.yaml").read_text())
        cfg["online_store"].update(url=redis_url, key_prefix=self.prefix)
        (self.path / "feature_store.yaml").write_text(yaml.safe_dump(cfg))
        if transform is None:
            views, self.table = set(AGGREGATION_VIEWS), "payments"
        else:
            shutil.copy(FIXTURES / "plain_stream.py", self.path)
            shutil.copy(FIXTURES / "running_count.py", self.path)
            shutil.copy(FIXTURES / f"{TRANSFORM_VIEW}.json", self.path / "expectations")
            with (self.path / ".feastignore").open("a") as f:
                f.write("running_count.py\n")
            views, self.table = {TRANSFORM_VIEW}, TRANSFORM_VIEW
        tiny = datagen.generate(seed=1, customers=5, merchants=2, days=1)
        datagen.write_tables(tiny, self.path / "data")  # the sources must exist to be applied
        self.platform = Platform(self.path)
        contents = repo_mod.parse(self.path)
        self.platform.store.apply(
            [
                *contents.entities,
                *contents.data_sources,
                *[v for v in contents.feature_views if v.name in views],
            ]
        )
        shutil.rmtree(self.delta_path, ignore_errors=True)  # only ingested rows from here on
        self.broker = broker
        self.topic = unique("payments")
        self.group = unique("g")
        broker.create_topic(self.topic, 2)
        broker.create_topic(f"{self.topic}.dlq", 1)
        self.configure()

    def configure(self, **extra) -> None:
        """Write ingest.yaml: fast test timings, plus ``extra`` (``batch``, ``retry``, ``kafka`` and
        ``topic`` are merged into their sections)."""
        if self.transform is None:
            topic = {"push_source": "payments_push", "fields": EVENT_FIELDS, "key_field": "customer_id"}
        else:
            topic = {
                "push_source": "txn_counts_push",
                "transform": f"running_count.py:{self.transform}",
                "fields": {
                    "payment_id": "int",
                    "customer_id": "int",
                    "amount": "float",
                    "event_timestamp": "timestamp",
                },
            }
        doc = {
            "kafka": {
                "bootstrap_servers": self.broker.bootstrap,
                "group_id": self.group,
                **FAST_KAFKA,
                **extra.pop("kafka", {}),
            },
            "dead_letter_topic": f"{self.topic}.dlq",
            "batch": {"online_interval_ms": 50, "offline_interval_ms": 300, **extra.pop("batch", {})},
            "retry": {"backoff_base_ms": 20, "backoff_max_ms": 200, **extra.pop("retry", {})},
            "topics": [{"topic": self.topic, **topic, "targets": "both", **extra.pop("topic", {})}],
            **extra,
        }
        (self.path / "ingest.yaml").write_text(yaml.safe_dump(doc))

    def config(self):
        from fs_platform.plugins.kafka_ingest import load_ingest_config

        return load_ingest_config(self.path)

    @property
    def delta_path(self) -> Path:
        return self.path / "data" / self.table

    def delta_rows(self):
        from deltalake import DeltaTable

        if not self.delta_path.exists():
            return None
        return DeltaTable(str(self.delta_path)).to_pandas()

    def online(self, view: str, key: str, ids: list[int], features: list[str] | None = None):
        if features is None:
            features = [f.name for f in self.platform.store.get_feature_view(view).features]
        return self.platform.store.get_online_features(
            features=[f"{view}:{f}" for f in features], entity_rows=[{key: int(i)} for i in ids]
        ).to_df()

    def committed(self) -> dict[int, int | None]:
        consumer = KafkaConsumer(
            bootstrap_servers=self.broker.bootstrap, group_id=self.group, enable_auto_commit=False
        )
        try:
            return {p: consumer.committed(TopicPartition(self.topic, p)) for p in (0, 1)}
        finally:
            consumer.close(autocommit=False)


@pytest.fixture
def stream_repo(tmp_path, broker):
    repo = StreamRepo(tmp_path, broker, "redis://127.0.0.1:6379/0")
    yield repo
    repo.platform.store.teardown()


@pytest.fixture
def transform_repo(tmp_path, broker):
    repo = StreamRepo(tmp_path, broker, "redis://127.0.0.1:6379/0", transform="RunningCount")
    yield repo
    repo.platform.store.teardown()


def payments(
    n: int,
    customers: int = 20,
    merchants: int = 4,
    first_id: int = 1,
    seed: int = 0,
    span: timedelta = timedelta(minutes=45),
    end: datetime | None = None,
) -> list[dict]:
    """``n`` payments with distinct event times spread evenly over ``span`` up to ``end`` (default:
    30 s ago), in arrival order: each arrives up to 5 minutes late, so many come after later ones
    (counted in their own, earlier tiles). With the default span every event stays well within the
    aggregation views' allowed lateness (1 h) of the Kafka timestamp it gets when produced."""
    import random

    rng = random.Random(seed)
    end = end or datetime.now(UTC) - timedelta(seconds=30)
    step = span / n
    times = [end - span + step * (i + 1) for i in range(n)]
    arrival = sorted(range(n), key=lambda i: times[i] + timedelta(seconds=rng.uniform(0, 300)))
    return [
        {
            "payment_id": first_id + j,
            "customer_id": rng.randint(1, customers),
            "merchant_id": rng.randint(1, merchants),
            "amount": round(rng.lognormvariate(3, 1), 2),
            "approved": rng.random() > 0.15,
            "event_timestamp": times[i].isoformat(),
        }
        for j, i in enumerate(arrival)
    ]


def produce(
    bootstrap: str, topic: str, events: list[dict], raw: list[bytes] = (), timestamp_ms: int | None = None
) -> None:
    """Send ``events`` keyed by customer (a customer's events share a partition), then ``raw`` values.
    ``timestamp_ms``: the records' Kafka timestamp (default: the producer's clock at send)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for e in events:
        producer.send(
            topic, key=str(e["customer_id"]).encode(), value=json.dumps(e).encode(), timestamp_ms=timestamp_ms
        )
    for value in raw:
        producer.send(
            topic, key=b"bad", value=value, headers=[("origin", b"test")], timestamp_ms=timestamp_ms
        )
    producer.flush()
    producer.close()


def events_frame(events: list[dict]):
    import pandas as pd

    frame = pd.DataFrame(events)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


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


# -- aggregation path ---------------------------------------------------------------------------------
def online_mismatches(repo: StreamRepo, events: list[dict]) -> list[str]:
    """How the online values of the example repo's aggregation views differ from the reference
    (``tests.aggregation.reference.expected``) over ``events`` as of the read: [] when they agree
    (floats to a relative 1e-9, counts exactly, nulls where the reference has none)."""
    import pandas as pd

    from fs_platform.aggregation import spec_of
    from tests.aggregation.reference import expected

    frame = events_frame(events)
    out = []
    for name, key in AGGREGATION_VIEWS.items():
        view = repo.platform.store.get_feature_view(name)
        spec = spec_of(view)
        tile_us = min(f.window.tile_us for f in spec.features)
        ids = sorted(int(i) for i in frame[key].unique())
        while True:  # a read within one tile of the smallest size: its windows are those of any instant in it
            before = time.time_ns() // 1000
            online = repo.online(name, key, ids)
            after = time.time_ns() // 1000
            if before // tile_us == after // tile_us:
                break
        at = pd.Timestamp(after, unit="us", tz="UTC")
        want = expected(spec, frame, pd.DataFrame({key: ids, "event_timestamp": [at] * len(ids)}))
        for f in view.features:
            for i, got, exp in zip(ids, online[f.name].tolist(), want[f.name].tolist(), strict=True):
                if exp is None or exp != exp:
                    ok = got is None or got != got
                else:
                    ok = got is not None and got == pytest.approx(exp, rel=1e-9)
                if not ok:
                    out.append(f"{name}:{f.name} {key}={i}: online {got!r}, reference {exp!r}")
    return out


def assert_exactly_once(repo: StreamRepo, events: list[dict]) -> None:
    """Delta ``data/payments`` holds each produced event exactly once, as produced; online, every
    aggregation view's values equal the reference over exactly these events (none lost, none
    counted twice)."""
    import pandas as pd

    rows = repo.delta_rows()
    assert rows is not None and len(rows) == len(events), (
        f"{0 if rows is None else len(rows)} rows for {len(events)} events"
    )
    assert not rows["payment_id"].duplicated().any()
    columns = list(EVENT_FIELDS)
    got = rows[columns].sort_values("payment_id").reset_index(drop=True)
    want = events_frame(events)[columns].sort_values("payment_id").reset_index(drop=True)
    for frame in (got, want):
        frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    mismatches = online_mismatches(repo, events)
    assert not mismatches, f"{len(mismatches)} online values differ from the reference: {mismatches[:10]}"


# -- transform path (fixtures/running_count.py) --------------------------------------------------------
def running_counts(events: list[dict], history: list[dict] = ()):
    """The rows ``RunningCount`` makes of ``events`` (in production order) after having seen
    ``history``; negative amounts are rejected. A customer's events share a partition, so this
    order is the offset order each partition's instance sees."""
    import pandas as pd

    count: dict[int, int] = {}
    cents: dict[int, int] = {}
    rows = []
    for i, e in enumerate([*history, *events]):
        if e["amount"] < 0:
            continue
        c = e["customer_id"]
        count[c] = count.get(c, 0) + 1
        cents[c] = cents.get(c, 0) + round(e["amount"] * 100)
        if i >= len(history):
            rows.append(
                {
                    "customer_id": c,
                    "event_timestamp": pd.Timestamp(e["event_timestamp"]),
                    "txn_count": count[c],
                    "amount_total": cents[c] / 100,
                }
            )
    return pd.DataFrame(rows)


def assert_rows(repo: StreamRepo, want) -> None:
    """Delta holds exactly the rows ``want`` (one per accepted event; events have distinct times),
    and online each customer's row of the newest event time."""
    import pandas as pd

    rows = repo.delta_rows()
    assert rows is not None and len(rows) == len(want), (
        f"{0 if rows is None else len(rows)} rows for {len(want)}"
    )
    columns = ["customer_id", "event_timestamp", "txn_count", "amount_total"]
    got = rows[columns].sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    want = want[columns].sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    for frame in (got, want):
        frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    newest = want.groupby("customer_id").last()
    online = repo.online(TRANSFORM_VIEW, "customer_id", list(newest.index)).set_index("customer_id")
    assert online["txn_count"].tolist() == newest["txn_count"].tolist()
    assert online["amount_total"].tolist() == newest["amount_total"].tolist()
