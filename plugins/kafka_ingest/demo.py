"""The stream part of ``fs demo``: fresh payments through an embedded broker and the real ingestor.

The last 24 hours of the chosen customers' payments are produced first and the demo's consumer
group is committed past them, so the ingestor's warm-up replays them into the transform's rolling
state without writing anything (exactly what happens after a restart). Fresh payments (event
time = now) are then produced while the ingestor runs, and the customers' stream-fed aggregates
move on from the materialized values.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from plugins.kafka_ingest.broker import EmbeddedBroker
from plugins.kafka_ingest.config import load_ingest_config
from plugins.kafka_ingest.ingestor import Ingestor
from plugins.kafka_ingest.metrics import IngestStats

_PARTITIONS = 2
_RATE_PER_S = 20


def _send(producer: KafkaProducer, topic: str, event: dict):
    return producer.send(topic, key=str(event["customer_id"]).encode(), value=json.dumps(event).encode())


def _history(producer, topic: str, data, customers: list[int]) -> dict[int, int]:
    """Produce the customers' last-24h payments; returns the next offset per partition."""
    pay = data.payments
    since = pay["event_timestamp"].max() - timedelta(hours=24)
    recent = pay[pay["customer_id"].isin(customers) & (pay["event_timestamp"] > since)]
    futures = [_send(producer, topic, e) for e in recent.assign(
        event_timestamp=recent["event_timestamp"].map(lambda t: t.isoformat())).to_dict("records")]
    producer.flush()
    ends: dict[int, int] = {}
    for f in futures:
        md = f.get(timeout=10)
        ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    return ends


def _commit(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in ends.items()})
    finally:
        consumer.close(autocommit=False)


def _fresh(producer, topic: str, data, customers: list[int], stop: threading.Event) -> int:
    """Fresh payments (event time now) round-robin over the customers until ``stop``; returns the count."""
    amounts = data.payments["amount"].sample(n=1000, replace=True, random_state=1).tolist()
    next_id = int(data.payments["payment_id"].max()) + 1
    sent = 0
    while not stop.is_set():
        customer = customers[sent % len(customers)]
        _send(producer, topic, {"payment_id": next_id + sent, "customer_id": int(customer), "merchant_id": 1,
                                "amount": amounts[sent % len(amounts)], "approved": True,
                                "event_timestamp": datetime.now(UTC).isoformat()})
        sent += 1
        time.sleep(1 / _RATE_PER_S)
    producer.flush()
    return sent


def _after(seconds: float, stop: threading.Event) -> threading.Event:
    """``stop``, set ``seconds`` from now."""
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop


@dataclass(frozen=True)
class StreamDemo:
    """What the demo's stream part did: payments replayed to warm the aggregates, fresh payments
    produced while the ingestor ran, and the ingestor's stats (every fresh payment is consumed)."""

    history: int
    produced: int
    stats: IngestStats

    def summary(self) -> str:
        p50 = self.stats.freshness_percentile(0.5)
        fresh = f", freshness p50 {p50 * 1000:.0f} ms" if p50 is not None else ""
        return (f"Kafka stream: {self.history} historical payments replayed to warm the aggregates, "
                f"{self.produced} fresh payments produced; ingested {self.stats.consumed}, "
                f"{self.stats.written_online} online writes, {self.stats.written_offline} Delta rows{fresh}.")


def stream_demo(platform, data, customers: list[int], seconds: float) -> StreamDemo:
    """Run the embedded broker, producer and ingestor; fresh payments are produced for ``seconds``."""
    with EmbeddedBroker() as broker:
        config = load_ingest_config(platform.repo_path, platform.env, {
            "kafka": {"bootstrap_servers": broker.bootstrap, "group_id": f"fs-demo-{uuid.uuid4().hex[:8]}",
                      "session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
            "batch": {"offline_interval_ms": 1000},
        })
        topic = config.topics[0].topic
        broker.create_topic(topic, _PARTITIONS)
        broker.create_topic(config.dead_letter_topic, 1)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        try:
            history = _history(producer, topic, data, customers)
            _commit(broker.bootstrap, config.kafka.group_id, topic, history)
            ingestor = Ingestor(platform, config)
            stop = threading.Event()
            runs: list = []  # the run's stats, or the exception it raised

            def run() -> None:
                try:
                    runs.append(ingestor.run())
                except BaseException as e:  # re-raised on the caller's thread below
                    runs.append(e)

            worker = threading.Thread(target=run)
            worker.start()
            try:
                sent = _fresh(producer, topic, data, customers, _after(seconds, stop))
                # Every produced payment is ingested before the demo reports (bounded wait).
                deadline = time.monotonic() + 30
                while ingestor.stats.consumed < sent and worker.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                ingestor.stop()  # drains: writes and commits what is buffered
                worker.join()
            if isinstance(runs[0], BaseException):
                raise runs[0]
            stats = runs[0]
        finally:
            producer.close()
    return StreamDemo(sum(history.values()), sent, stats)
