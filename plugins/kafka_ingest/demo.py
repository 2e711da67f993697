"""The stream part of ``fs demo``: fresh payments through an embedded broker and the real ingestor.

Fresh payments (event time = now) are produced while the ingestor runs. The aggregation views'
tiles were rebuilt from the Delta events by ``fs materialize`` just before; the ingestor adds the
fresh events to them, so the customers' windowed aggregates move on from the materialized values
with no warm-up (the tiles in Redis are the stream state).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaProducer

from fs_platform.plugins.kafka_ingest.broker import EmbeddedBroker
from fs_platform.plugins.kafka_ingest.config import load_ingest_config
from fs_platform.plugins.kafka_ingest.ingestor import Ingestor
from fs_platform.plugins.kafka_ingest.metrics import IngestStats

_PARTITIONS = 2
_RATE_PER_S = 20


def _send(producer: KafkaProducer, topic: str, event: dict):
    return producer.send(topic, key=str(event["customer_id"]).encode(), value=json.dumps(event).encode())


def _fresh(producer, topic: str, data, customers: list[int], stop: threading.Event) -> int:
    """Fresh payments (event time now) round-robin over the customers until ``stop``; returns the count."""
    amounts = data.payments["amount"].sample(n=1000, replace=True, random_state=1).tolist()
    next_id = int(data.payments["payment_id"].max()) + 1
    sent = 0
    while not stop.is_set():
        customer = customers[sent % len(customers)]
        _send(
            producer,
            topic,
            {
                "payment_id": next_id + sent,
                "customer_id": int(customer),
                "merchant_id": 1,
                "amount": amounts[sent % len(amounts)],
                "approved": True,
                "event_timestamp": datetime.now(UTC).isoformat(),
            },
        )
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
    """What the demo's stream part did: fresh payments produced while the ingestor ran, and the
    ingestor's stats (every fresh payment is consumed)."""

    produced: int
    stats: IngestStats

    def summary(self) -> str:
        p50 = self.stats.freshness_percentile(0.5)
        fresh = f", freshness p50 {p50 * 1000:.0f} ms" if p50 is not None else ""
        return (
            f"Kafka stream: {self.produced} fresh payments produced; ingested {self.stats.consumed}, "
            f"{self.stats.written_online} online tile updates, "
            f"{self.stats.written_offline} Delta rows{fresh}."
        )


def stream_demo(platform, data, customers: list[int], seconds: float) -> StreamDemo:
    """Run the embedded broker, producer and ingestor; fresh payments are produced for ``seconds``."""
    with EmbeddedBroker() as broker:
        config = load_ingest_config(
            platform.repo_path,
            platform.env,
            {
                "kafka": {
                    "bootstrap_servers": broker.bootstrap,
                    "group_id": f"fs-demo-{uuid.uuid4().hex[:8]}",
                    "session_timeout_ms": 6000,
                    "heartbeat_interval_ms": 500,
                },
                "batch": {"offline_interval_ms": 1000},
            },
        )
        topic = config.topics[0].topic
        broker.create_topic(topic, _PARTITIONS)
        broker.create_topic(config.dead_letter_topic, 1)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        try:
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
    return StreamDemo(sent, stats)
