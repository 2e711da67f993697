"""The ``ingest`` dashboard (the Kafka ingestor)."""

from __future__ import annotations

from fs_platform.monitoring.panels import RATE, Dashboard, Panel, Row, p99, q

INGEST = Dashboard(
    "fs-ingest",
    "fs / Ingest",
    "The Kafka ingestor (fs ingest run): throughput, consumer lag, freshness, breakers, dead letters.",
    (
        Row(
            "Throughput",
            (
                Panel(
                    "Records consumed per second",
                    (q(f"sum by (topic) (rate(fs_ingest_consumed_records_total[{RATE}]))", "{{topic}}"),),
                    unit="ops",
                ),
                Panel(
                    "Rows written per second",
                    (
                        q(
                            f"sum by (topic, target) (rate(fs_ingest_written_rows_total[{RATE}]))",
                            "{{topic}} {{target}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Rows skipped per second",
                    (
                        q(
                            f"sum by (topic) (rate(fs_ingest_skipped_stale_rows_total[{RATE}]))",
                            "stale {{topic}}",
                        ),
                        q(
                            f"sum by (topic) (rate(fs_ingest_skipped_duplicate_rows_total[{RATE}]))",
                            "duplicate {{topic}}",
                        ),
                    ),
                    unit="ops",
                    description="Stale: a newer event is stored online. Duplicate: offsets already in Delta.",
                ),
                Panel(
                    "Batch write p99 by target",
                    (q(p99("fs_ingest_batch_seconds", "target"), "{{target}}"),),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Lag and freshness",
            (
                Panel(
                    "Consumer lag by topic",
                    (q("sum by (topic) (fs_ingest_consumer_lag)", "{{topic}}"),),
                    description="High watermark minus position, summed over the assigned partitions.",
                ),
                Panel(
                    "Consumer lag by partition",
                    (q("max by (topic, partition) (fs_ingest_consumer_lag)", "{{topic}}[{{partition}}]"),),
                ),
                Panel(
                    "Freshness (online write time - event time) p50 / p99",
                    (
                        q(p99("fs_ingest_freshness_seconds", "topic", quantile=0.5), "p50 {{topic}}"),
                        q(p99("fs_ingest_freshness_seconds", "topic"), "p99 {{topic}}"),
                    ),
                    unit="s",
                    width=24,
                ),
            ),
        ),
        Row(
            "Failures",
            (
                Panel(
                    "Circuit breaker (0 closed, 1 half-open, 2 open)",
                    (q("max by (target) (fs_ingest_breaker_state)", "{{target}}"),),
                    kind="stat",
                    width=8,
                    thresholds=(1, 2),
                ),
                Panel(
                    "Write retries per second",
                    (q(f"sum by (target) (rate(fs_ingest_write_retries_total[{RATE}]))", "{{target}}"),),
                    width=8,
                    unit="ops",
                ),
                Panel(
                    "Parked records (1h)",
                    (q("sum by (topic) (increase(fs_ingest_parked_records_total[1h]))", "{{topic}}"),),
                    kind="stat",
                    width=8,
                    thresholds=(1,),
                    description="Bad records the dead-letter topic did not take: logged by offset, act now.",
                ),
                Panel(
                    "Dead letters per second by reason",
                    (
                        q(
                            f"sum by (topic, reason) (rate(fs_ingest_dead_lettered_records_total[{RATE}]))",
                            "{{topic}} {{reason}}",
                        ),
                    ),
                    unit="ops",
                    width=24,
                ),
            ),
        ),
    ),
)
