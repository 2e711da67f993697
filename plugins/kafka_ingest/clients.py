"""The ingestor's Kafka clients, configured from ``ingest.yaml``: the consumer-group member, the
dead-letter producer, and the group-less reader that replays history into stateful transforms."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer

from fs_platform.plugins.kafka_ingest.config import IngestConfig, kafka_client_kwargs


def dead_letter_producer(config: IngestConfig) -> KafkaProducer:
    # max_request_size above the letters' cap (truncation keeps them under it); max_block_ms bounds a
    # send waiting for the dead-letter topic's metadata (a stalled loop otherwise).
    return KafkaProducer(
        acks="all",
        linger_ms=5,
        max_request_size=max(1_048_576, config.dead_letter_max_bytes + 65_536),
        max_block_ms=10_000,
        **kafka_client_kwargs(config),
    )


def group_member(config: IngestConfig) -> KafkaConsumer:
    """The consumer-group member; offsets are committed by hand, after the writes they cover."""
    k = config.kafka
    return KafkaConsumer(
        group_id=k.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
        max_poll_interval_ms=k.max_poll_interval_ms,
        fetch_max_bytes=k.fetch_max_bytes,
        fetch_max_wait_ms=k.fetch_max_wait_ms,
        max_partition_fetch_bytes=min(k.fetch_max_bytes, 4 * 1024 * 1024),
        max_poll_records=k.max_poll_records,
        **kafka_client_kwargs(config),
    )


def history_reader(config: IngestConfig) -> KafkaConsumer:
    """A reader outside the group (it commits nothing), so the member's positions stay put."""
    return KafkaConsumer(
        enable_auto_commit=False,
        max_poll_records=config.kafka.max_poll_records,
        fetch_max_wait_ms=config.kafka.fetch_max_wait_ms,
        **kafka_client_kwargs(config),
    )
