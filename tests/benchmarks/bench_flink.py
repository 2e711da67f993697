"""Flink engine benchmark: events/s and freshness of the Flink job vs the built-in ingestor, on the same
topic in the same run, and state bytes per key.

    .venv/bin/python tests/benchmarks/bench_flink.py [--quick] [--redis-url redis://127.0.0.1:6379/0]

Same embedded tansu broker, same topic (2 partitions), the example repo's three aggregation views of
``payments``, tiles only (the topic has ``targets: online`` for both engines: no Delta appends):
- throughput: N payments already on the topic, then a few sentinel payments of fresh customers; each
  engine (a fresh consumer group, a fresh Redis prefix) is timed by the same outside observer from its
  first tile visible online to every sentinel visible (a partition is applied in order, so all N are);
  start-up (group join, JVM) is excluded.
- freshness: a producer process sends load at a fixed rate while probe payments of new customers, stamped
  'now', go every 50 ms; freshness = first online read that sees a probe - its event time, p50/p99.
- state: Redis memory per (entity, view) key pair (tiles + offset marks, the same bytes whichever engine
  wrote them) and the size of the Flink job's last checkpoint (its only state: Kafka positions).

Writes its section of docs/benchmarks.md (between the ``flink`` markers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import yaml  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from fs_platform import repo as repo_mod  # noqa: E402
from fs_platform.platform import Platform  # noqa: E402
from fs_platform.plugins.flink import load_flink_settings, run_flink  # noqa: E402
from fs_platform.plugins.kafka_ingest import Ingestor, load_ingest_config  # noqa: E402
from fs_platform.plugins.kafka_ingest.broker import EmbeddedBroker  # noqa: E402
from tests.benchmarks.bench_ingest import VIEWS, _payments, _produce, _rate_producer, make_repo  # noqa: E402
from tests.benchmarks.report import write_section  # noqa: E402

FEATURE = "customer_txn_aggregates:txn_count_24h"
SENTINELS = list(range(900_001, 900_013))  # fresh customers: on both partitions whatever the hash
PROBE_BASE = 5_000_000


def _event(customer: int, payment: int) -> dict:
    return {
        "payment_id": payment,
        "customer_id": customer,
        "merchant_id": 1,
        "amount": 1.0,
        "approved": True,
        "event_timestamp": datetime.now(UTC).isoformat(),
    }


def _send(bootstrap: str, topic: str, events: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    for e in events:
        producer.send(topic, key=str(e["customer_id"]).encode(), value=json.dumps(e).encode())
    producer.flush()
    producer.close()


def _repo(tmp: Path, redis_url: str, bootstrap: str, topic: str, engine: str) -> Platform:
    """A repo copy with the three views applied and an ingest.yaml pointing at ``topic`` (fresh group)."""
    path = make_repo(tmp, redis_url)
    platform = Platform(path)
    contents = repo_mod.parse(path)
    platform.store.apply(
        [*contents.entities, *contents.data_sources, *[v for v in contents.feature_views if v.name in VIEWS]]
    )
    topic_spec = {**load_ingest_config(path).topics[0].model_dump(), "topic": topic, "targets": "online"}
    doc = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-{engine}-{uuid.uuid4().hex[:6]}",
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
        },
        "dead_letter_topic": f"{topic}.dlq",
        "topics": [topic_spec],
    }
    (path / "ingest.yaml").write_text(yaml.safe_dump(doc))
    (path / "flink.yaml").write_text(yaml.safe_dump({"checkpoint_interval_ms": 2000, "bundle_ms": 100}))
    return platform


def _counts(platform: Platform, customers: list[int]) -> list[int]:
    df = platform.store.get_online_features(
        features=[FEATURE], entity_rows=[{"customer_id": c} for c in customers]
    ).to_df()
    return [int(x) if x == x and x is not None else 0 for x in df["txn_count_24h"].tolist()]


def _wait(cond, timeout_s: float, what: str, alive) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if not alive():
            raise SystemExit(f"bench_flink: the engine stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_flink: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


def _throughput(platform: Platform, n: int, alive, sample: list[int]) -> float:
    """events/s from the first tile visible to every sentinel visible."""
    _wait(lambda: any(_counts(platform, sample)), 300, "the first tiles online", alive)
    t0 = time.perf_counter()
    _wait(lambda: all(_counts(platform, SENTINELS)), 600, f"{n:,} events online", alive)
    return n / (time.perf_counter() - t0)


def _freshness(platform: Platform, bootstrap: str, topic: str, rate: int, seconds: float, alive, first: int):
    """p50/p99 (s) of probe payments' event time -> first online read that shows them, under load."""
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Array("d", 2)
    load = ctx.Process(target=_rate_producer, args=(bootstrap, topic, rate, seconds, done))
    load.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    pending: dict[int, float] = {}
    samples: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def poll():
        while not stop.is_set() or pending:
            with lock:
                ids = list(pending)
            if ids:
                seen = time.time()
                for c, v in zip(ids, _counts(platform, ids), strict=True):
                    if v:
                        with lock:
                            samples.append(seen - pending.pop(c))
            time.sleep(0.005)
            if not alive():
                return

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        c = first + i
        e = _event(c, PROBE_BASE + c)
        with lock:
            pending[c] = time.time()
        producer.send(topic, key=str(c).encode(), value=json.dumps(e).encode())
        producer.flush()
        i += 1
        time.sleep(0.05)
    load.join()
    stop.set()
    poller.join(120)
    producer.close()
    samples.sort()
    return (
        samples[len(samples) // 2],
        samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        len(samples),
        done[0] / max(done[1], 1e-9),
    )


def _bytes_per_key(redis_url: str, prefix: str) -> float:
    r = redis.Redis.from_url(redis_url)
    keys = [k for k in r.scan_iter(match=f"{prefix}:*customer_txn_aggregates", count=1000)][:300]
    sizes = [r.memory_usage(k) for k in keys]  # tiles and offset marks: one key per entity
    return statistics.mean(sizes)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Small run.")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    n = 20_000 if args.quick else 60_000
    rate, rate_s = 2_000, (8 if args.quick else 20)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="bench_flink_"))
    results: dict[str, dict] = {}
    with EmbeddedBroker() as broker:
        topic = "bench-flink-payments"
        broker.create_topic(topic, 2)
        broker.create_topic(f"{topic}.dlq", 1)
        _produce(broker.bootstrap, topic, _payments(n))
        _send(broker.bootstrap, topic, [_event(c, 800_000 + c) for c in SENTINELS])
        sample = list(range(1, 201))

        # The built-in ingestor.
        platform = _repo(tmp, args.redis_url, broker.bootstrap, topic, "ingestor")
        ingestor = Ingestor(platform, load_ingest_config(platform.repo_path))
        runner = threading.Thread(target=ingestor.run, daemon=True)
        runner.start()
        c0 = time.process_time()
        eps = _throughput(platform, n, runner.is_alive, sample)
        cpu = (time.process_time() - c0) / n * 1e6
        p50, p99, probes, achieved = _freshness(
            platform, broker.bootstrap, topic, rate, rate_s, runner.is_alive, 6_000_000
        )
        results["ingestor"] = {
            "eps": eps,
            "p50": p50,
            "p99": p99,
            "probes": probes,
            "achieved": achieved,
            "bytes": _bytes_per_key(args.redis_url, platform.config.online_store.key_prefix),
            "cpu": cpu,
        }
        ingestor.stop()
        runner.join(60)
        platform.store.teardown()
        print("ingestor", results["ingestor"], flush=True)

        # The Flink job (local mini-cluster), same topic, from the beginning.
        platform = _repo(tmp, args.redis_url, broker.bootstrap, topic, "flink")
        settings = load_flink_settings(platform.repo_path)
        t_start = time.perf_counter()
        job = run_flink(
            platform, load_ingest_config(platform.repo_path), settings, log_path=tmp / "flink-job.log"
        )
        alive = lambda: job.process.poll() is None  # noqa: E731
        try:
            _wait(lambda: any(_counts(platform, sample)), 300, "the first tiles online", alive)
            startup = time.perf_counter() - t_start
            eps = _throughput(platform, n, alive, sample)
            p50, p99, probes, achieved = _freshness(
                platform, broker.bootstrap, topic, rate, rate_s, alive, 7_000_000
            )
            time.sleep(3)  # a checkpoint after the last events
            checkpoints = sorted(job.checkpoint_dir.glob("*/chk-*"), key=lambda p: p.stat().st_mtime)
            results["flink"] = {
                "eps": eps,
                "p50": p50,
                "p99": p99,
                "probes": probes,
                "achieved": achieved,
                "bytes": _bytes_per_key(args.redis_url, platform.config.online_store.key_prefix),
                "startup": startup,
                "checkpoint": _dir_bytes(checkpoints[-1]) if checkpoints else 0,
            }
            t_stop = time.perf_counter()
            job.stop()
            results["flink"]["stop"] = time.perf_counter() - t_stop
        finally:
            job.kill()
            platform.store.teardown()
        print("flink", results["flink"], flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    i, f = results["ingestor"], results["flink"]
    load = os.getloadavg()[0]
    section = "\n".join(
        [
            "## Flink engine vs the built-in ingestor (`tests/benchmarks/bench_flink.py`"
            + (" --quick" if args.quick else "")
            + ")",
            "",
            f"Embedded tansu broker, one topic of 2 partitions, {n:,} JSON payments (2,000 customers, 200 "
            "merchants), the example repo's three aggregation views "
            f"({', '.join(f'`{v}`' for v in VIEWS)}), tiles in Redis only (the ingestor's topic has "
            "`targets: online` for both engines: no Delta appends). One process each: the ingestor, and "
            "the Flink job on a local mini-cluster (parallelism 1, hashmap state, checkpoints every 2 s). "
            f"Same topic, same run, one after the other; measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
            f"a shared 2-core machine (1-minute load average at the end {load:.1f}): single runs, noisy; "
            "compare ratios.",
            "",
            "| what | ingestor | Flink | Flink / ingestor |",
            "|---|---:|---:|---:|",
            f"| events/s (first tile online -> all {n:,} online; start-up excluded) | {i['eps']:,.0f} | "
            f"{f['eps']:,.0f} | **{f['eps'] / i['eps']:.2f}x** |",
            f"| freshness p50 / p99 at {rate:,} events/s ({i['achieved']:,.0f} / {f['achieved']:,.0f}/s "
            f"achieved; {i['probes']} / {f['probes']} probes) | {i['p50'] * 1000:,.0f} / "
            f"{i['p99'] * 1000:,.0f} ms | {f['p50'] * 1000:,.0f} / {f['p99'] * 1000:,.0f} ms | "
            f"{f['p50'] / i['p50']:.2f}x / {f['p99'] / i['p99']:.2f}x |",
            "| Redis bytes per (customer, `customer_txn_aggregates`): tiles + offset marks | "
            f"{i['bytes']:,.0f} | {f['bytes']:,.0f} | {f['bytes'] / i['bytes']:.2f}x |",
            "| engine state outside Redis | none (offsets committed to Kafka) | last checkpoint "
            f"{f['checkpoint']:,} bytes in all (Kafka positions only: 0 bytes per key) | |",
            f"| start-up to the first tile online / stop | | {f['startup']:.1f} s (JVM, planning, Python "
            f"worker) / {f['stop']:.1f} s with a savepoint | |",
            "",
            "Both engines run the same code per record (the ingestor's decoder and "
            "`tile_events.prepare_events`); the Flink job adds Arrow batches between the JVM and its Python "
            "worker, and scales by parallelism (`flink.yaml`) rather than by more ingestor processes. "
            "Freshness = the first online read that sees a probe payment of a new customer minus its event "
            "time (stamped at send), polled every 5 ms: it includes the broker, the fetch wait and the "
            "engine's batch interval (ingestor `online_interval_ms` 100, Flink `bundle_ms` 100).",
        ]
    )
    write_section("flink", section)
    print(section)


if __name__ == "__main__":
    main()
