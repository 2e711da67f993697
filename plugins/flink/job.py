"""The Flink job (runs in the Flink environment: ``python -m fs_platform.plugins.flink.job``; started
by ``runner.run_flink``). One Kafka source over the views' topics (key, value and the record's topic,
partition, offset and timestamp, as raw bytes: the ingestor's decoder validates them), one vectorized
Python UDF that writes the tiles and appends the raw events to Delta (``udf.ApplyRecords``), a
blackhole sink.

Unbounded: the job never asks Kafka for end offsets (tansu under-reports them). SIGTERM stops it with a
savepoint under ``<checkpoint_dir>/savepoints`` (the next start restores the newest savepoint or
checkpoint); SIGKILL leaves the last completed checkpoint, which is retained."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def flink_config(settings, checkpoint_dir: Path, restore: str | None, jars: list[Path]) -> dict[str, str]:
    """Flink configuration of the job (Flink 2.0 keys)."""
    conf = {
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoint_dir.resolve().as_uri(),
        "execution.checkpointing.savepoint-dir": (checkpoint_dir / "savepoints").resolve().as_uri(),
        "execution.checkpointing.num-retained": str(settings.retained_checkpoints),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": settings.state_backend,
        "parallelism.default": str(settings.parallelism),
        "pipeline.jars": ";".join(j.resolve().as_uri() for j in jars),
        "python.executable": settings.python or sys.executable,
        "python.client.executable": sys.executable,
        "python.fn-execution.bundle.time": str(settings.bundle_ms),
        "python.fn-execution.bundle.size": str(settings.bundle_size),
        "python.fn-execution.arrow.batch.size": str(settings.bundle_size),
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        "table.local-time-zone": "UTC",
        "pipeline.name": "fs-stream",
    }
    if restore:
        conf["execution.state-recovery.path"] = restore
    if settings.flink_metrics_port is not None:
        conf["metrics.reporter.prom.factory.class"] = (
            "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
        )
        conf["metrics.reporter.prom.port"] = str(settings.flink_metrics_port)
    if settings.target == "remote":
        host, _, port = settings.rest_address.rpartition(":")
        conf.update({"execution.target": "remote", "rest.address": host, "rest.port": port})
    return conf


def reporter_on_classpath() -> None:
    """Flink's Prometheus reporter ships as a plugin (``pyflink/plugins/metrics-prometheus``), but the
    local mini-cluster loads reporters from the classpath only: put its jar on the JVM's before PyFlink
    starts it (PyFlink appends ``HADOOP_CLASSPATH`` to the gateway's classpath)."""
    import os

    import pyflink

    jars = sorted((Path(pyflink.__file__).parent / "plugins" / "metrics-prometheus").glob("*.jar"))
    if not jars:
        log.warning("no Flink Prometheus reporter jar in this PyFlink: flink_metrics_port is ignored")
        return
    previous = os.environ.get("HADOOP_CLASSPATH")
    os.environ["HADOOP_CLASSPATH"] = os.pathsep.join([str(jars[0]), *([previous] if previous else [])])


def source_ddl(topics: list[str], kafka, group: str) -> str:
    props = {
        "connector": "kafka",
        "topic": ";".join(topics),
        "properties.bootstrap.servers": kafka.bootstrap_servers,
        "properties.group.id": group,
        "properties.client.id.prefix": kafka.client_id + "-flink",
        "properties.security.protocol": kafka.security_protocol,
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": "earliest",
        "scan.topic-partition-discovery.interval": "30 s",
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }
    if kafka.sasl_mechanism:
        import os

        user = os.environ.get(kafka.sasl_username_env or "", "")
        password = os.environ.get(kafka.sasl_password_env or "", "")
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if kafka.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        props["properties.sasl.mechanism"] = kafka.sasl_mechanism
        props["properties.sasl.jaas.config"] = f'{module} required username="{user}" password="{password}";'
    options = ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in props.items())
    return (
        "CREATE TEMPORARY TABLE fs_source (\n  `k` BYTES,\n  `v` BYTES,\n"
        "  `topic` STRING METADATA VIRTUAL,\n  `partition` INT METADATA VIRTUAL,\n"
        "  `offset` BIGINT METADATA VIRTUAL,\n  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL\n"
        f") WITH (\n  {options}\n)"
    )


def _stop_with_savepoint(client, directory: str) -> str:
    """PyFlink 2.0.2's ``JobClient.stop_with_savepoint`` calls a Java overload that no longer exists
    (the format type became mandatory): call Java's directly."""
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return client._j_job_client.stopWithSavepoint(False, directory, canonical).get()


def _stop(client, directory: str, patience_s: float = 60.0) -> str | None:
    """Stop with a savepoint; its path. A savepoint needs every task running: while the job is still
    starting, retry; past ``patience_s``, cancel (the retained checkpoints stay) and return None."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            path = _stop_with_savepoint(client, directory)
            log.info("flink job stopped with savepoint %s", path)
            return path
        except Exception as e:  # py4j: the job is not running yet (or no longer)
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            if time.monotonic() >= deadline:
                log.error(
                    "no savepoint (%s): cancelling; the next start restores the last checkpoint", reason
                )
                client.cancel().result()
                return None
            log.info("savepoint not possible yet (%s); retrying", reason)
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from fs_platform.platform import Platform
    from fs_platform.plugins.flink.env import connector_jars
    from fs_platform.plugins.flink.plan import plan_job
    from fs_platform.plugins.flink.settings import FlinkSettings
    from fs_platform.plugins.flink.udf import apply_records
    from fs_platform.plugins.kafka_ingest.config import load_ingest_config

    p = argparse.ArgumentParser(prog="fs_platform.plugins.flink.job")
    p.add_argument("--repo", required=True)
    p.add_argument("--env", default="dev")
    p.add_argument("--views", default="")
    p.add_argument("--group", required=True)
    p.add_argument("--settings", required=True, help="FlinkSettings as JSON")
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--restore", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = FlinkSettings(**json.loads(a.settings))
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))

    with Platform(a.repo, a.env) as platform:
        config = load_ingest_config(platform.repo_path, a.env)
        plan = plan_job(platform.store, config, [v for v in a.views.split(",") if v] or None)
    checkpoint_dir = Path(a.checkpoint_dir)
    conf = flink_config(settings, checkpoint_dir, a.restore, connector_jars())
    if settings.flink_metrics_port is not None and settings.target == "local":
        reporter_on_classpath()
    env_settings = EnvironmentSettings.new_instance().in_streaming_mode().build()
    t_env = TableEnvironment.create(env_settings)
    for k, v in conf.items():
        t_env.get_config().set(k, v)
    t_env.create_temporary_function(
        "apply_records",
        apply_records(
            str(platform.repo_path),
            a.env,
            sorted(plan.views),
            list(plan.topics),
            a.group,
            settings.model_dump(),
        ),
    )
    t_env.execute_sql(source_ddl(list(plan.topics), config.kafka, a.group))
    t_env.execute_sql("CREATE TEMPORARY TABLE fs_sink (`status` STRING) WITH ('connector' = 'blackhole')")
    result = t_env.execute_sql(
        "INSERT INTO fs_sink SELECT apply_records(`topic`, `partition`, `offset`, `ts`, `k`, `v`) "
        "FROM fs_source"
    )
    client = result.get_job_client()
    job_id = str(client.get_job_id())
    log.info(
        "flink job %s running: views %s, topics %s%s",
        job_id,
        ", ".join(plan.views),
        ", ".join(plan.topics),
        f", restored from {a.restore}" if a.restore else "",
    )
    print(json.dumps({"job_id": job_id, "restored_from": a.restore}), flush=True)
    while True:
        if stop["requested"]:
            path = _stop(client, (checkpoint_dir / "savepoints").resolve().as_uri())
            print(json.dumps({"job_id": job_id, "savepoint": path}), flush=True)
            return 0 if path else 1
        status = str(client.get_job_status().result())
        if status in ("FAILED", "CANCELED", "FINISHED"):
            log.error("flink job %s ended: %s", job_id, status)
            return 1 if status != "FINISHED" else 0
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
