"""``fs serve`` metrics (Prometheus). Label values come from small fixed sets: endpoint, feature
service (or ``features`` for a feature list), HTTP status, view: never entity keys or values.

With several workers the server runs prometheus_client's multiprocess mode (the master points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before forking; each worker opens its files
there on first use), so ``/metrics`` on any worker reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from fs_platform.observability import REGISTRY

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)

REQUEST_SECONDS = Histogram(
    "fs_serve_request_seconds",
    "Time from receiving a request to sending its response.",
    ["endpoint", "feature_service", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ENTITIES = Histogram(
    "fs_serve_entities_per_request",
    "Entity rows per /get-online-features request.",
    ["feature_service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    registry=REGISTRY,
)
REDIS_SECONDS = Histogram(
    "fs_serve_redis_seconds",
    "Time of the one Redis read of a request.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DIRECT_READS = Counter(
    "fs_serve_direct_reads_total",
    "Redis reads answered within the loop callback (the worker had nothing else to do).",
    registry=REGISTRY,
)
SHED = Counter(
    "fs_serve_shed_total", "Requests refused with 503 because the worker was full.", registry=REGISTRY
)
VIEW_FAILURES = Counter(
    "fs_serve_view_failures_total",
    "Responses in which a view's features were INVALID (read failed, breaker open, decode failed).",
    ["view", "reason"],
    registry=REGISTRY,
)
BREAKER_OPEN = Gauge(
    "fs_serve_breaker_open",
    "1 while a worker's Redis breaker is open.",
    registry=REGISTRY,
    multiprocess_mode="max",
)
REGISTRY_REFRESHES = Counter(
    "fs_serve_registry_refreshes_total",
    "Registry re-reads that found a change and rebuilt the request plans.",
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The text exposition: all workers' values in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
